#!/usr/bin/env bash
# The load comparison of BENCHMARKS.md ("Replicas on PostgreSQL"): the load
# generator against keysmith on its embedded store and against one, two and three replicas
# on one PostgreSQL database, on this machine, in one run. Each round runs
# every setup on a fresh store (a new data directory, a new database dropped
# afterwards): ListKeys first (the load generator seeds 1,000 keys), then
# Issue; the order of the setups alternates from round to round. Prints a
# table of medians over the rounds and leaves every RESULT line in
# $OUT/results.jsonl.
#
# Needs the release build:
#   cargo build --release -p keysmith --bin keysmith -p keysmith-examples --example loadgen
# and a PostgreSQL where the URL's user may create databases:
#   KEYSMITH_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test examples/replicas/compare.sh
#
# Settings (environment): ROUNDS (3), DURATION (10 s measured per phase),
# WARMUP (2 s), CLIENTS (64), CONNECTIONS (6: spread over the replicas
# round-robin, so 6, 3+3 or 2+2+2), POOL_SIZE (16 connections per replica),
# SETUPS ("embedded pg1 pg2 pg3"), OUT (a fresh directory under /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."

ADMIN_URL="${KEYSMITH_BENCH_POSTGRES_URL:?set KEYSMITH_BENCH_POSTGRES_URL, e.g. postgres://postgres@127.0.0.1:5432/test}"
TARGET="${CARGO_TARGET_DIR:-target}/release"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
CLIENTS="${CLIENTS:-64}"
CONNECTIONS="${CONNECTIONS:-6}"
POOL_SIZE="${POOL_SIZE:-16}"
SETUPS="${SETUPS:-embedded pg1 pg2 pg3}"
OUT="${OUT:-$(mktemp -d /tmp/keysmith-replicas.XXXXXX)}"
for bin in "$TARGET/keysmith" "$TARGET/examples/loadgen"; do
  test -x "$bin" || { echo "$bin is missing: build it first (see the top of $0)" >&2; exit 1; }
done
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

PIDS=()
DATABASE=""
stop_all() {
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  PIDS=()
  if [ -n "$DATABASE" ]; then
    psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null
    DATABASE=""
  fi
}
trap stop_all EXIT

# Starts one keysmith on an ephemeral port, logging JSON to $1, with the
# rest of the arguments as environment; sets ADDR to its address once it
# serves (not printed: a command substitution would lose PIDS).
start_keysmith() {
  local log="$1"
  shift
  env "$@" KEYSMITH__SERVER__LISTEN=127.0.0.1:0 KEYSMITH__METRICS__ENABLED=false \
    KEYSMITH__LOG__FORMAT=json KEYSMITH__LOG__FILTER=info \
    "$TARGET/keysmith" serve >"$log" 2>&1 &
  PIDS+=($!)
  local pid=$!
  for _ in $(seq 1 600); do
    ADDR="$(grep -h '"keysmith is serving"' "$log" | sed -E 's/.*"addr":"([^"]+)".*/\1/' | head -n1 || true)"
    if [ -n "$ADDR" ]; then ADDR="http://$ADDR"; return; fi
    kill -0 "$pid" 2>/dev/null || { echo "keysmith exited:" >&2; cat "$log" >&2; exit 1; }
    sleep 0.1
  done
  echo "keysmith did not start within 60 s:" >&2
  cat "$log" >&2
  exit 1
}

# One setup on a fresh store: ListKeys, then Issue.
run_setup() {
  local setup="$1" round="$2"
  local dir="$OUT/$setup-$round"
  mkdir -p "$dir"
  local storage=(KEYSMITH__STORAGE__ENCRYPTION__KEY_FILE="$dir/kek")
  local replicas=1
  if [ "$setup" != embedded ]; then
    replicas="${setup#pg}"
    DATABASE="keysmith_bench_$(date +%s%N)"
    psql -q "$ADMIN_URL" -c "CREATE DATABASE $DATABASE" >/dev/null
    storage+=(KEYSMITH__STORAGE__BACKEND=postgres
      KEYSMITH__STORAGE__POSTGRES__URL="${ADMIN_URL%/*}/$DATABASE"
      KEYSMITH__STORAGE__POSTGRES__POOL_SIZE="$POOL_SIZE")
  fi
  local addrs=()
  # One after the other: the first makes the key-encryption key.
  for r in $(seq 1 "$replicas"); do
    start_keysmith "$dir/keysmith-$r.log" "${storage[@]}" KEYSMITH__STORAGE__DATA_DIR="$dir/data-$r"
    addrs+=("$ADDR")
  done
  local joined
  joined="$(IFS=,; echo "${addrs[*]}")"
  local load
  load="$(uptime | sed -E 's/.*load average: //')"
  for scenario in list issue; do
    "$TARGET/examples/loadgen" --addr "$joined" --scenario "$scenario" \
      --clients "$CLIENTS" --connections "$CONNECTIONS" \
      --duration "$DURATION" --warmup "$WARMUP" >"$dir/$scenario.out" 2>"$dir/$scenario.err"
    grep '^RESULT ' "$dir/$scenario.out" | sed 's/^RESULT //' |
      jq -c --arg setup "$setup" --argjson round "$round" --arg load "$load" \
        '. + {setup: $setup, round: $round, load_before: $load}' >>"$RESULTS"
    grep -v '^RESULT ' "$dir/$scenario.out" | sed "s/^/$setup round $round: /"
  done
  stop_all
}

echo "machine: $(nproc) cores, load average $(uptime | sed -E 's/.*load average: //')"
for round in $(seq 1 "$ROUNDS"); do
  order="$SETUPS"
  # Alternate: every other round runs the setups in the reverse order.
  if [ $((round % 2)) -eq 0 ]; then order="$(echo "$SETUPS" | tr ' ' '\n' | tac | tr '\n' ' ')"; fi
  for setup in $order; do run_setup "$setup" "$round"; done
done

# Medians over the rounds, and each setup against the embedded store and one replica.
jq -s -r '
  def median: sort | if length % 2 == 1 then .[length / 2 | floor]
                     else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  def fmt: (. * 10 | round / 10);
  group_by(.scenario) | map(
    . as $runs | ($runs[0].scenario) as $scenario |
    (map(select(.setup == "embedded") | .throughput) | median) as $embedded |
    (map(select(.setup == "pg1") | .throughput) | median) as $pg1 |
    (group_by(.setup) | map({
      setup: .[0].setup,
      runs: (map(.throughput | round) | join(" / ")),
      throughput: (map(.throughput) | median),
      p99: (map(.p99_ms) | median),
      errors: (map(.errors) | add)
    }) | map("| \($scenario) | \(.setup) | \(.runs) | **\(.throughput | round)/s** | " +
             "\(if $embedded then (.throughput / $embedded * 100 | round / 100 | tostring) + "x" else "-" end) | " +
             "\(if $pg1 then (.throughput / $pg1 * 100 | round / 100 | tostring) + "x" else "-" end) | " +
             "\(.p99 | fmt) ms | \(.errors) |"))[]
  ) | (["| phase | setup | runs (req/s) | median | vs embedded | vs pg1 | p99 (median) | errors |",
        "|---|---|---|---|---|---|---|---|"] + .) | .[]' "$RESULTS"
echo "RESULT lines: $RESULTS"
