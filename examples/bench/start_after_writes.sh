#!/usr/bin/env bash
# The first start after many writes (BENCHMARKS.md, "Start time with
# 1,000,000 keys"): on a copy of a data directory, start, N Issues with
# h2load, stop (timed), then two starts timed to "keysmith is serving".
#
#   examples/bench/start_after_writes.sh /tmp/keys-1m/data 300000
#
# KEYSMITH names the binary (./target/release/keysmith); H2B the directory of
# h2load bodies. Uses ports 50714 and 9714.
set -u
cd "$(dirname "$0")/../.."
SRC=$1; N=$2; KS=${KEYSMITH:-./target/release/keysmith}; H2B=${H2B:-$(dirname "$SRC")/h2b}
PORT=50714; D=$(mktemp -d)/data; LOG=$(dirname "$D")/server.log
cp -a "$SRC" "$D"; sync
start() {
  local t0; t0=$(date +%s.%N); rm -f "$LOG"
  KEYSMITH__STORAGE__DATA_DIR=$D KEYSMITH__SERVER__LISTEN=127.0.0.1:$PORT \
    KEYSMITH__METRICS__LISTEN=127.0.0.1:9714 KEYSMITH__LOG__FILTER=info "$KS" serve > "$LOG" 2>&1 &
  PID=$!
  until grep -q "keysmith is serving" "$LOG"; do
    kill -0 "$PID" 2>/dev/null || { cat "$LOG"; exit 1; }
    sleep 0.01
  done
  T=$(echo "$(date +%s.%N) - $t0" | bc)
}
stop() {
  local t0; t0=$(date +%s.%N)
  kill -TERM "$PID"; wait "$PID"
  S=$(echo "$(date +%s.%N) - $t0" | bc)
}
start; echo "start before the writes: $T s"
h2load -n "$N" -c 4 -m 16 -t 1 --data "$H2B/issue.grpc" -H 'content-type: application/grpc' \
  -H 'te: trailers' "http://127.0.0.1:$PORT/keysmith.v1.AccessService/Issue" | grep -E "^finished in"
stop; echo "stop after $N writes: $S s"
start; echo "first start after them: $T s"; stop
start; echo "second start: $T s"; stop
rm -rf "$(dirname "$D")"
