#!/usr/bin/env bash
# Resident memory under h2load for one storage.memory_budget_mb, on a copy of
# an existing data directory (BENCHMARKS.md, "Memory within one budget"):
# 20 s of Issue, then 20 s of ListKeys, RSS read every 0.5 s.
#
#   examples/bench/memory_under_load.sh /tmp/keys-400k/data 256 /tmp/mem-256
#
# H2B names the directory of h2load bodies (keys_memory_start.sh writes them).
# Uses ports 50712 and 9712.
set -u
cd "$(dirname "$0")/../.."
SRC=$1; BUDGET=$2; OUT=$3; BIN=${BIN:-./target/release}; H2B=${H2B:-$(dirname "$SRC")/h2b}
PORT=50712; D=$OUT/data
mkdir -p "$OUT"; rm -rf "$D" "$OUT/server.log"; cp -a "$SRC" "$D"
KEYSMITH__STORAGE__DATA_DIR=$D KEYSMITH__SERVER__LISTEN=127.0.0.1:$PORT \
  KEYSMITH__METRICS__LISTEN=127.0.0.1:9712 KEYSMITH__STORAGE__MEMORY_BUDGET_MB=$BUDGET \
  KEYSMITH__LOG__FILTER=warn "$BIN/keysmith" serve > "$OUT/server.log" 2>&1 &
PID=$!
until ss -ltn | grep -q ":$PORT "; do
  kill -0 "$PID" 2>/dev/null || { cat "$OUT/server.log"; exit 1; }
  sleep 0.05
done
rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$PID/status"; }
( while kill -0 "$PID" 2>/dev/null; do rss; sleep 0.5; done > "$OUT/rss.log" ) &
load() {
  h2load -D 20 -c 4 -m 16 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' "$@" \
    | grep -E "^finished in"
}
echo "budget $BUDGET MB: RSS at start $(rss) MB"
load --data "$H2B/issue.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/Issue"
echo "  after Issue: $(rss) MB"
load --data "$H2B/list.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/ListKeys"
echo "  after ListKeys: $(rss) MB, peak $(sort -n "$OUT/rss.log" | tail -1) MB"
kill -TERM "$PID"; wait "$PID"; rm -rf "$D"
