#!/usr/bin/env bash
# Fan-out benchmark: one message to a session of N connections (default 1,000,
# 10,000 and 50,000) through the release `switchboard worker` on the embedded
# store and its signed @connections client (SigV4, as on AWS), to a minimal local
# @connections sink (nginx answering 200). Beside it, the physical limit: wrk
# POSTing the same body to the same sink at the same concurrency.
#
#   bench/fanout.sh [--pipeline K] [N ...] [--record]
#
# --record appends rows to docs/benchmarks.md. --pipeline K runs the worker
# with --fanout-pipeline K (K requests per write on each connection, 128/K
# connections) and wrk the same way: -c(128/K), each connection sending K
# pipelined requests at a time.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
SIZES=()
RECORD=0
PIPELINE=1
USAGE="usage: bench/fanout.sh [--pipeline K] [N ...] [--record]"
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD=1 ;;
    --pipeline) PIPELINE=${2:?$USAGE}; shift ;;
    *[!0-9]*) echo "$USAGE" >&2; exit 2 ;;
    *) SIZES+=("$1") ;;
  esac
  shift
done
case "$PIPELINE" in ''|*[!0-9]*|0) echo "$USAGE" >&2; exit 2 ;; esac
[ ${#SIZES[@]} -gt 0 ] || SIZES=(1000 10000 50000)
CONCURRENCY=${SWITCHBOARD_FANOUT_CONCURRENCY:-128}
ensure_tools
echo "==> cargo build --release (worker and bench tools)"
# BENCH_SKIP_BUILD=1 measures the binaries already built (e.g. while another
# build of the same tree would only re-link them).
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --quiet --bin switchboard --benches
BIN=target/release/switchboard
WORK=$(mktemp -d)
WORKER_PID=""
cleanup() { [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null || true; stop_sink "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
start_sink "$WORK" plain

printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 420)\nwrk.headers["Content-Type"] = "application/json"\n' >"$WORK/post.lua"
WRK_CONNECTIONS=$CONCURRENCY
if [ "$PIPELINE" -gt 1 ]; then
  # wrk's pipelining: each connection sends PIPELINE requests in one write
  # and reads their answers before the next batch.
  printf 'init = function(args)\n  local r = {}\n  for i = 1, %d do r[i] = wrk.format() end\n  batch = table.concat(r)\nend\nrequest = function() return batch end\n' "$PIPELINE" >>"$WORK/post.lua"
  WRK_CONNECTIONS=$(( (CONCURRENCY + PIPELINE - 1) / PIPELINE ))
fi
# wrk's requests/s and its own CPU (user + system, from the kernel's
# accounting of the child) per request: the cheapest client of the same sink.
read -r WRK WRK_US < <(python3 - "$WORK/post.lua" "$WRK_CONNECTIONS" "http://127.0.0.1:$SINK_PORT/bench/@connections/x" <<'PY'
import re, resource, subprocess, sys
out = subprocess.run(["wrk", "-t2", "-c" + sys.argv[2], "-d5s", "-s", sys.argv[1], sys.argv[3]],
                     capture_output=True, text=True, check=True).stdout
rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
requests = int(re.search(r"(\d+) requests in", out).group(1))
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(rate, 1e6 * (used.ru_utime + used.ru_stime) / requests)
PY
)
: >"$WORK/access.log"
printf '\nsink limit (wrk -t2 -c%d, same body, %d per write): %.0f requests/s, %.1f µs of wrk CPU per request\n\n' "$WRK_CONNECTIONS" "$PIPELINE" "$WRK" "$WRK_US"
printf '%8s %12s %10s %10s %10s %10s %8s %8s %12s %12s\n' N deliveries/s vs_wrk p50_ms p99_ms RSS_MiB CPU_s CPU_% us_CPU/deliv CPU_vs_wrk
for N in "${SIZES[@]}"; do
  DIR="$WORK/store-$N"
  cargo bench --quiet --bench seed -- "$DIR" 1 "$N" 1 200 2>/dev/null
  : >"$WORK/access.log"
  METRICS_PORT=$(free_port)
  SWITCHBOARD_LOG_FORMAT=json "$BIN" worker --data-dir "$DIR" \
    --queue-url embedded://switchboard-inbound.fifo \
    --callback-url "http://127.0.0.1:$SINK_PORT/bench" \
    --metrics-addr "127.0.0.1:$METRICS_PORT" --fanout-concurrency "$CONCURRENCY" --fanout-pipeline "$PIPELINE" 2>"$WORK/worker-$N.log" &
  WORKER_PID=$!
  wait_lines "$WORK/access.log" "$N" 300 "$WORKER_PID"
  RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
  CPU_TICKS=$(awk '{print $14 + $15}' "/proc/$WORKER_PID/stat")
  curl -fs "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics-$N"
  kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=""
  read -r FIRST LAST < <(awk '{ if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 } END { print min, max }' "$WORK/access.log")
  WINDOW=$(echo "$LAST - $FIRST" | bc -l)
  RATE=$(echo "$N / $WINDOW" | bc -l)
  P50=$(histogram_quantile "$WORK/metrics-$N" switchboard_delivery_duration_seconds 0.5)
  P99=$(histogram_quantile "$WORK/metrics-$N" switchboard_delivery_duration_seconds 0.99)
  CPU=$(echo "$CPU_TICKS / $(getconf CLK_TCK)" | bc -l)
  US_PER=$(echo "1000000 * $CPU / $N" | bc -l)
  printf '%8d %12.0f %9.0f%% %10.2f %10.2f %10.1f %8.2f %7.0f%% %12.1f %11.1f×\n' "$N" "$RATE" "$(echo "100 * $RATE / $WRK" | bc -l)" \
    "$(echo "$P50 * 1000" | bc -l)" "$(echo "$P99 * 1000" | bc -l)" "$(echo "$RSS_KB / 1024" | bc -l)" "$CPU" "$(echo "100 * $CPU / $WINDOW" | bc -l)" "$US_PER" \
    "$(echo "$US_PER / $WRK_US" | bc -l)"
  if [ "$RECORD" = 1 ]; then
    printf '| %s | %s | %d | %d | %.0f | %.0f %% | %.2f | %.2f | %.1f | %.2f | %.1f | %.0f | %.1f | `bench/fanout.sh %s%d` |\n' \
      "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$N" "$CONCURRENCY" "$RATE" "$(echo "100 * $RATE / $WRK" | bc -l)" \
      "$(echo "$P50 * 1000" | bc -l)" "$(echo "$P99 * 1000" | bc -l)" "$(echo "$RSS_KB / 1024" | bc -l)" "$CPU" "$US_PER" "$WRK" "$WRK_US" "$([ "$PIPELINE" = 1 ] || echo "--pipeline $PIPELINE ")" "$N" >>"$WORK/rows"
  fi
done
if [ "$RECORD" = 1 ]; then
  record_rows "$WORK/rows" "fanout rows"
fi
echo "machine: $(machine)"
