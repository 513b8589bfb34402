#!/usr/bin/env bash
# Two release builds of keysmith against each other on the embedded default,
# server alone with h2load (BENCHMARKS.md, "fjall in place of sled"): per
# run, a fresh data directory, 10 s of Issue, then 10 s of ListKeys (first
# pages of 50, audited) on the keys just made; ROUNDS rounds, the order of
# the builds alternating. Prints each run's requests per second and every
# run's errors, then the medians.
#
#   git worktree add /tmp/old <commit>
#   (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release --bin keysmith)
#   cargo build --release --bin keysmith -p keysmith-examples --example loadgen
#   examples/bench/compare_builds.sh /tmp/old-target/release/keysmith ./target/release/keysmith
#
# Needs h2load (Debian nghttp2-client) and bc. Uses port 50721; ROUNDS (3) and
# DURATION (10 s) from the environment. Run from anywhere: it works in the
# repository's root, where the embedded default keeps its development key.
set -eu
cd "$(dirname "$0")/../.."
. examples/bench/lib.sh
A=$1; B=$2; ROUNDS=${ROUNDS:-3}; DURATION=${DURATION:-10}
OUT=$(mktemp -d /tmp/keysmith-compare.XXXXXX); PORT=50721
LOADGEN=${LOADGEN:-./target/release/examples/loadgen}
"$LOADGEN" --h2load-bodies "$OUT/h2b" >/dev/null
load() {
  h2 -D "$DURATION" --data "$OUT/h2b/$1.grpc" "http://127.0.0.1:$PORT/keysmith.v1.AccessService/$2" \
    | tee -a "$OUT/h2load.log" | awk '/^finished in/{rate=$4} /^requests:/{errors=$10+$12} END{printf "%s %s", rate, errors}'
}
run() {
  local bin=$1 name=$2
  rm -rf "$OUT/data"
  ks_start "$bin" "$OUT/data" "$PORT" "$OUT/server.log" \
    KEYSMITH__METRICS__ENABLED=false KEYSMITH__LOG__FILTER=info,keysmith::access=off
  read -r issue issue_errors <<<"$(load issue Issue)"
  read -r list list_errors <<<"$(load list ListKeys)"
  ks_stop
  echo "$name issue $issue list $list (errors: $issue_errors, $list_errors)" | tee -a "$OUT/runs"
}
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then run "$A" A; run "$B" B; else run "$B" B; run "$A" A; fi
done
median() { sort -n | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
for name in A B; do
  issue=$(awk -v n=$name '$1==n{print $3}' "$OUT/runs" | median)
  list=$(awk -v n=$name '$1==n{print $5}' "$OUT/runs" | median)
  echo "$name median: Issue $issue/s, ListKeys $list/s"
done
rm -rf "$OUT/data"
