#!/usr/bin/env bash
# Issue 17's figures for the embedded default (BENCHMARKS.md, "Memory within
# one budget" and "Start time with 1,000,000 keys"): KEYS Issues with h2load
# into a fresh data directory, then 20 s of ListKeys (first pages of 50,
# audited), with the server's resident memory read every second; the server
# stopped and started five times, then once with the page cache dropped
# (as root); the store's bytes per key from store_report.
#
#   cargo build --release --bin keysmith --example store_report
#   cargo build --release -p keysmith-examples --example loadgen
#   examples/bench/keys_memory_start.sh 1000000 /tmp/keys-1m
#
# Needs h2load (Debian nghttp2-client) and bc. Uses ports 50711 and 9711.
set -u
cd "$(dirname "$0")/../.."
. examples/bench/lib.sh
KEYS=${1:-400000}; OUT=${2:-/tmp/keysmith-keys}; BIN=${BIN:-./target/release}
PORT=50711; D=$OUT/data; H2B=$OUT/h2b
mkdir -p "$OUT"; rm -rf "$D"
[ -f "$H2B/issue.grpc" ] || "$BIN/examples/loadgen" --h2load-bodies "$H2B" >/dev/null
start() {
  ks_start "$BIN/keysmith" "$D" "$PORT" "$OUT/server.log" \
    KEYSMITH__METRICS__LISTEN=127.0.0.1:9711 KEYSMITH__LOG__FILTER=info
}
load() { h2 "$@" | grep -E "^finished in|succeeded"; }
start; sleep 2; echo "RSS of a server on an empty store: $(ks_rss) MB"
ks_rss_every 1 "$OUT/rss.log"
load -n "$KEYS" --data "$H2B/issue.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/Issue"
echo "RSS after the Issues: $(ks_rss) MB"
load -D 20 --data "$H2B/list.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/ListKeys"
echo "RSS after ListKeys: $(ks_rss) MB; peak under load: $(sort -n "$OUT/rss.log" | tail -1) MB"
ks_stop
for i in 1 2 3 4 5; do start; echo "start $i: $T s to serving, RSS $(ks_rss) MB"; ks_stop; done
if [ -w /proc/sys/vm/drop_caches ]; then
  sync; echo 3 > /proc/sys/vm/drop_caches; start; echo "start, page cache dropped: $T s"; ks_stop
fi
"$BIN/examples/store_report" "$D"
