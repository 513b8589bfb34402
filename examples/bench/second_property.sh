#!/usr/bin/env bash
# Resident memory when the listing cache loads a large property beside many
# stored keys (BENCHMARKS.md, "Memory within one budget", where the budget
# plus the fixed overhead does not hold): on a copy of a data directory made
# by keys_memory_start.sh, keysmith serves the embedded default with a second
# property (second-hotel, the demo hotel's doors again); N Issues to it with
# h2load, then 30 s of ListKeys on it, RSS read every 0.5 s.
#
#   examples/bench/second_property.sh /tmp/keys-1m/data 150000
#
# Needs python3, h2load, bc and the release builds of keysmith and loadgen.
# Uses ports 50715 and 9715.
set -u
cd "$(dirname "$0")/../.."
. examples/bench/lib.sh
SRC=$1; N=$2; BIN=${BIN:-./target/release}
WORK=$(mktemp -d); D=$WORK/data; CONFIG=$WORK/two-properties.toml
cp -a "$SRC" "$D"
python3 - crates/keysmith-server/src/default.toml "$CONFIG" <<'PY'
import sys
src = open(sys.argv[1]).read()
start = src.index('[[drivers.offline_lock.properties]]')
lines, block = src[start:].split('\n'), []
for i, line in enumerate(lines):
    if i and line.startswith('[') and not line.startswith(('[[drivers.offline_lock.properties', '[drivers.offline_lock.properties')):
        break
    block.append(line)
second = '\n'.join(block).replace('property_id = "demo-hotel"', 'property_id = "second-hotel"')
open(sys.argv[2], 'w').write(src[:start] + second + '\n' + src[start:])
PY
ks_start "$BIN/keysmith" "$D" 50715 "$WORK/server.log" \
  KEYSMITH__METRICS__LISTEN=127.0.0.1:9715 KEYSMITH__LOG__FILTER=info,keysmith::access=off \
  -- --config "$CONFIG"
echo "RSS at start: $(ks_rss) MB"
"$BIN/examples/loadgen" --addr http://127.0.0.1:50715 --property second-hotel \
  --h2load-bodies "$WORK/h2b" > /dev/null
ks_rss_every 0.5 "$WORK/rss.log"
load() { h2 "$@" | grep -E "^finished in"; }
load -n "$N" --data "$WORK/h2b/issue.grpc" http://127.0.0.1:50715/keysmith.v1.AccessService/Issue
echo "RSS after the Issues: $(ks_rss) MB"
load -D 30 --data "$WORK/h2b/list.grpc" http://127.0.0.1:50715/keysmith.v1.AccessService/ListKeys
echo "RSS after ListKeys: $(ks_rss) MB, peak $(sort -n "$WORK/rss.log" | tail -1) MB"
sleep 5; echo "RSS 5 s later: $(ks_rss) MB"
grep -c "larger than the listing cache" "$WORK/server.log" | sed 's/^/warnings that a property is larger than the listing budget: /'
ks_stop; rm -rf "$WORK"
