#!/usr/bin/env bash
# Resident memory under h2load for one storage.memory_budget_mb, on a copy of
# an existing data directory (BENCHMARKS.md, "Memory within one budget"):
# 20 s of Issue, then 20 s of ListKeys, RSS read every 0.5 s.
#
#   examples/bench/memory_under_load.sh /tmp/keys-400k/data 256 /tmp/mem-256
#
# H2B names the directory of h2load bodies (keys_memory_start.sh writes them).
# Needs h2load and bc. Uses ports 50712 and 9712.
set -u
cd "$(dirname "$0")/../.."
. examples/bench/lib.sh
SRC=$1; BUDGET=$2; OUT=$3; BIN=${BIN:-./target/release}; H2B=${H2B:-$(dirname "$SRC")/h2b}
PORT=50712; D=$OUT/data
mkdir -p "$OUT"; rm -rf "$D" "$OUT/server.log"; cp -a "$SRC" "$D"
ks_start "$BIN/keysmith" "$D" "$PORT" "$OUT/server.log" \
  KEYSMITH__METRICS__LISTEN=127.0.0.1:9712 KEYSMITH__STORAGE__MEMORY_BUDGET_MB="$BUDGET" \
  KEYSMITH__LOG__FILTER=info,keysmith::access=off
ks_rss_every 0.5 "$OUT/rss.log"
load() { h2 -D 20 "$@" | grep -E "^finished in"; }
echo "budget $BUDGET MB: RSS at start $(ks_rss) MB"
load --data "$H2B/issue.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/Issue"
echo "  after Issue: $(ks_rss) MB"
load --data "$H2B/list.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/ListKeys"
echo "  after ListKeys: $(ks_rss) MB, peak $(sort -n "$OUT/rss.log" | tail -1) MB"
ks_stop; rm -rf "$D"
