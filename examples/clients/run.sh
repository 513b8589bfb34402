#!/usr/bin/env bash
# Runs the Python and TypeScript example clients (examples/clients/python,
# examples/clients/typescript) against a real keysmith: the binary that
# `cargo test --workspace` built (built here if absent), serving
# examples/keysmith.toml (bearer tokens) on an ephemeral loopback port with a
# fresh data directory and key, metrics off. Each client exits non-zero when
# keysmith answers anything but what it expects; so does this script.
# .ci/run runs it; it needs Python 3.11 with venv and pip, and Node 20 with npm.
set -euo pipefail
cd "$(dirname "$0")/../.."
target_dir="$(mkdir -p "${CARGO_TARGET_DIR:-target}" && cd "${CARGO_TARGET_DIR:-target}" && pwd)"
keysmith="$target_dir/debug/keysmith"
test -x "$keysmith" || cargo build -p keysmith --bin keysmith

work="$(mktemp -d)"
server_pid=""
stop_server() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid"
    wait "$server_pid" || true
  fi
  rm -rf "$work"
}
trap stop_server EXIT

# keysmith's log goes through a FIFO: this script reads it line by line until
# keysmith says where it serves (port 0: the kernel picks a free one), with no
# sleep and a bounded wait, then drains the rest into a file.
mkfifo "$work/log.fifo"
# RUST_LOG would win over the log filter: unset, so the line comes.
env -u RUST_LOG \
  KEYSMITH__SERVER__LISTEN=127.0.0.1:0 \
  KEYSMITH__METRICS__ENABLED=false \
  KEYSMITH__STORAGE__DATA_DIR="$work/data" \
  KEYSMITH__STORAGE__ENCRYPTION__KEY_FILE="$work/kek" \
  KEYSMITH__LOG__FORMAT=json \
  KEYSMITH__LOG__FILTER=info \
  "$keysmith" serve --config examples/keysmith.toml >"$work/log.fifo" 2>&1 &
server_pid=$!
exec 3<"$work/log.fifo"
addr=""
# At most 120 s per line: a cold start on a busy CI machine takes seconds.
while IFS= read -r -t 120 line <&3; do
  echo "$line" >>"$work/keysmith.log"
  if [[ $line == *'"message":"keysmith is serving"'* && $line =~ \"addr\":\"([^\"]+)\" ]]; then
    addr="${BASH_REMATCH[1]}"
    break
  fi
done
if [ -z "$addr" ]; then
  echo "keysmith did not start serving; its log:" >&2
  cat "$work/keysmith.log" >&2
  exit 1
fi
cat <&3 >>"$work/keysmith.log" &
echo "keysmith serves $addr"
token=ks_demo_front_desk_not_for_production # examples/keysmith.toml's front desk

# Python: grpcio, stubs generated from proto/ at start. The virtualenv lives
# in the target directory, so a second run installs nothing.
venv="$target_dir/clients-python-venv"
test -x "$venv/bin/python" || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check -r examples/clients/python/requirements.txt
"$venv/bin/python" examples/clients/python/keysmith_client.py --addr "$addr" --token "$token"

# TypeScript: @grpc/grpc-js, types from proto-loader-gen-types, compiled by tsc.
(
  cd examples/clients/typescript
  npm ci --no-audit --no-fund --loglevel=error
  npm run --silent build
  node dist/src/keysmith_client.js --addr "$addr" --token "$token"
)

# A graceful stop (SIGTERM): keysmith finishes its calls and exits 0.
kill -TERM "$server_pid"
status=0
wait "$server_pid" || status=$?
server_pid=""
if [ "$status" -ne 0 ]; then
  echo "keysmith exited $status on SIGTERM; its log:" >&2
  cat "$work/keysmith.log" >&2
  exit 1
fi
