# What the benchmark scripts beside it share: starting and stopping a
# keysmith server on the embedded default, its resident memory, and h2load
# with gRPC's headers. Sourced, not run; the scripts cd to the repository's
# root first, where the embedded default keeps its development key file.

# ks_start BIN DATA_DIR PORT LOG [VAR=value...] [-- serve arguments...]
# Starts BIN serve on 127.0.0.1:PORT with its data in DATA_DIR, its output in
# LOG and the extra KEYSMITH__ settings given, and waits until it logs
# "keysmith is serving" (the log filter must let info through: set
# KEYSMITH__LOG__FILTER to one that does, or leave the default). Sets PID,
# and T: seconds from the start to serving. Exits with the log if the server
# dies first.
ks_start() {
  local bin=$1 data=$2 port=$3 log=$4 t0
  shift 4
  local -a env=() args=()
  while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then shift; args=("$@"); break; fi
    env+=("$1"); shift
  done
  t0=$(date +%s.%N); : > "$log"
  env KEYSMITH__STORAGE__DATA_DIR="$data" KEYSMITH__SERVER__LISTEN="127.0.0.1:$port" \
    "${env[@]}" "$bin" serve "${args[@]}" > "$log" 2>&1 &
  PID=$!
  until grep -q "keysmith is serving" "$log"; do
    kill -0 "$PID" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.01
  done
  T=$(echo "$(date +%s.%N) - $t0" | bc)
}

# ks_stop [SIGNAL]: stops the server ks_start started with SIGNAL (TERM:
# a clean stop; KILL: a crash); S is how long it took.
ks_stop() {
  local t0; t0=$(date +%s.%N)
  kill -"${1:-TERM}" "$PID"; wait "$PID" || true
  S=$(echo "$(date +%s.%N) - $t0" | bc)
}

# ks_rss: the server's resident memory in MB.
ks_rss() { awk '/VmRSS/{print int($2/1024)}' "/proc/$PID/status"; }

# ks_rss_every SECONDS FILE: the server's RSS appended to FILE every SECONDS
# until it exits (in the background).
ks_rss_every() {
  ( while kill -0 "$PID" 2>/dev/null; do ks_rss; sleep "$1"; done > "$2" ) &
}

# h2 [h2load arguments...]: h2load from 4 connections of 16 streams on one
# thread, with gRPC's headers.
h2() {
  h2load -c 4 -m 16 -t 1 -H 'content-type: application/grpc' -H 'te: trailers' "$@"
}
