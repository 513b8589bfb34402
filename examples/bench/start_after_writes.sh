#!/usr/bin/env bash
# The first start after many writes (BENCHMARKS.md, "Start time with
# 1,000,000 keys"): on a copy of a data directory, start, N Issues with
# h2load, stop (timed), then two starts timed to "keysmith is serving".
# SIGNAL=KILL stops it as a crash would, so that the first start replays
# what the engine's journal holds.
#
#   examples/bench/start_after_writes.sh /tmp/keys-1m/data 300000
#   SIGNAL=KILL examples/bench/start_after_writes.sh /tmp/keys-1m/data 300000
#
# KEYSMITH names the binary (./target/release/keysmith); H2B the directory of
# h2load bodies. Needs h2load and bc. Uses ports 50714 and 9714.
set -u
cd "$(dirname "$0")/../.."
. examples/bench/lib.sh
SRC=$1; N=$2; KS=${KEYSMITH:-./target/release/keysmith}; H2B=${H2B:-$(dirname "$SRC")/h2b}
PORT=50714; D=$(mktemp -d)/data; LOG=$(dirname "$D")/server.log
cp -a "$SRC" "$D"; sync
start() {
  ks_start "$KS" "$D" "$PORT" "$LOG" KEYSMITH__METRICS__LISTEN=127.0.0.1:9714 KEYSMITH__LOG__FILTER=info
}
start; echo "start before the writes: $T s"
h2 -n "$N" --data "$H2B/issue.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/Issue" | grep -E "^finished in"
ks_stop "${SIGNAL:-TERM}"; echo "stop (SIG${SIGNAL:-TERM}) after $N writes: $S s"
start; echo "first start after them: $T s"; ks_stop
start; echo "second start: $T s"; ks_stop
rm -rf "$(dirname "$D")"
