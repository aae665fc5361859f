#!/usr/bin/env bash
# Fan-out benchmark: one message to a session of N connections (default 10,000)
# through the release `switchboard worker` and the real aws-sdk-apigatewaymanagement
# client, to a minimal local @connections sink (nginx answering 200). SQS and
# DynamoDB are moto's server. Prints deliveries/s, the worker's peak RSS and CPU,
# and the sink's own limit measured with wrk at the same concurrency.
#
#   bench/fanout-moto.sh [N] [--record]     (--record appends a row to docs/benchmarks.md)
#
# Installs (pinned) Debian's nginx-light and wrk if missing; loopback only;
# every wait has a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."
N=10000
RECORD=0
for a in "$@"; do
  case "$a" in
    --record) RECORD=1 ;;
    *[!0-9]*) echo "usage: bench/fanout-moto.sh [N] [--record]" >&2; exit 2 ;;
    *) N=$a ;;
  esac
done
CONCURRENCY=${SWITCHBOARD_FANOUT_CONCURRENCY:-128}
# Upstream versions pinned; the Debian security revision floats (old ones vanish from the mirror).
NGINX_VERSION="1.22.1-9+deb12u*"
WRK_VERSION="4.1.0-3*"

# shellcheck source=scripts/moto.sh
. scripts/moto.sh

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
  echo "==> installing nginx-light=$NGINX_VERSION and wrk=$WRK_VERSION from Debian"
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "nginx-light=$NGINX_VERSION" "wrk=$WRK_VERSION" >/dev/null
fi

echo "==> cargo build --release"
cargo build --release --quiet
BIN=target/release/switchboard

WORK=$(mktemp -d)
SINK_PORT=$(free_port)
METRICS_PORT=$(free_port)
cat >"$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/error.log;
events { worker_connections 4096; }
http {
  log_format sink '\$msec \$request_method \$uri \$status';
  access_log $WORK/access.log sink;
  keepalive_requests 1000000;
  client_body_buffer_size 256k;
  server {
    listen 127.0.0.1:$SINK_PORT;
    location / { return 200; }
  }
}
NGINX

WORKER_PID=""
cleanup() {
  [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null || true
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  stop_moto
  rm -rf "$WORK"
}
start_moto
trap cleanup EXIT
nginx -c "$WORK/nginx.conf"

export AWS_ENDPOINT_URL="$MOTO_URL" AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export SWITCHBOARD_LOG_FORMAT=json
"$BIN" migrate >"$WORK/migrate.out"
QUEUE_URL=$(sed -n 's/^SWITCHBOARD_QUEUE_URL=//p' "$WORK/migrate.out")

echo "==> seeding $N connections and one message"
"$VENV/bin/python" bench/seed.py "$MOTO_URL" switchboard-connections "$QUEUE_URL" bench-room "$N"

: >"$WORK/access.log"
START=$(date +%s.%N)
"$BIN" worker --queue-url "$QUEUE_URL" --callback-url "http://127.0.0.1:$SINK_PORT/bench" \
  --metrics-addr "127.0.0.1:$METRICS_PORT" --wait-time-seconds 1 \
  --fanout-concurrency "$CONCURRENCY" 2>"$WORK/worker.log" &
WORKER_PID=$!

# Wait (up to 10 minutes) until the sink has seen N posts.
for _ in $(seq 1 3000); do
  [ "$(wc -l <"$WORK/access.log")" -ge "$N" ] && break
  kill -0 "$WORKER_PID" 2>/dev/null || { echo "worker died:" >&2; tail "$WORK/worker.log" >&2; exit 1; }
  sleep 0.2
done
END=$(date +%s.%N)
GOT=$(wc -l <"$WORK/access.log")
[ "$GOT" -ge "$N" ] || { echo "only $GOT of $N deliveries arrived" >&2; exit 1; }

RSS_KB=$(awk '/VmHWM/ {print $2}' "/proc/$WORKER_PID/status")
CPU_TICKS=$(awk '{print $14 + $15}' "/proc/$WORKER_PID/stat")
TICKS=$(getconf CLK_TCK)
METRICS=$(curl -fs "http://127.0.0.1:$METRICS_PORT/metrics")
kill -TERM "$WORKER_PID"
wait "$WORKER_PID" || true
WORKER_PID=""

read -r FIRST LAST < <(awk '{ if (min == "" || $1 < min) min = $1; if ($1 > max) max = $1 } END { print min, max }' "$WORK/access.log")
WINDOW=$(echo "$LAST - $FIRST" | bc -l)
TOTAL=$(echo "$END - $START" | bc -l)
RATE=$(echo "$N / $WINDOW" | bc -l)
HANDLE=$(echo "$METRICS" | awk '/^switchboard_handle_duration_seconds_sum\{action="sendMessage"\}/ {print $2}')
OK=$(echo "$METRICS" | awk '/^switchboard_deliveries_total\{outcome="ok"\}/ {print $2}')

# The sink's own limit: wrk posting the same-size body at the same concurrency.
printf 'wrk.method = "POST"\nwrk.body = string.rep("x", 330)\nwrk.headers["Content-Type"] = "application/json"\n' >"$WORK/post.lua"
WRK_RATE=$(wrk -t2 -c"$CONCURRENCY" -d5s -s "$WORK/post.lua" "http://127.0.0.1:$SINK_PORT/bench/@connections/x" | awk '/Requests\/sec/ {print $2}')

printf '\nfan-out of one message to %d connections (concurrency %d)\n' "$N" "$CONCURRENCY"
printf '  %-34s %s\n' "deliveries ok (worker metric)" "$OK"
printf '  %-34s %.3f s\n' "first to last delivery" "$WINDOW"
printf '  %-34s %.0f /s\n' "deliveries/s" "$RATE"
printf '  %-34s %.3f s\n' "worker handle() time (incl. Query)" "$HANDLE"
printf '  %-34s %.3f s\n' "worker start to last delivery" "$TOTAL"
printf '  %-34s %.1f MiB\n' "worker peak RSS (VmHWM)" "$(echo "$RSS_KB / 1024" | bc -l)"
printf '  %-34s %.2f s\n' "worker CPU time (user+sys)" "$(echo "$CPU_TICKS / $TICKS" | bc -l)"
printf '  %-34s %.0f /s (ours: %.0f %%)\n' "sink limit (wrk, same concurrency)" "$WRK_RATE" "$(echo "100 * $RATE / $WRK_RATE" | bc -l)"

if [ "$RECORD" = 1 ]; then
  printf '| %s | %s | %d | %d | %.0f | %.3f | %.1f | %.2f | %.0f | `bench/fanout-moto.sh %d` |\n' \
    "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$N" "$CONCURRENCY" "$RATE" "$HANDLE" \
    "$(echo "$RSS_KB / 1024" | bc -l)" "$(echo "$CPU_TICKS / $TICKS" | bc -l)" "$WRK_RATE" "$N" >>docs/benchmarks.md
  echo "recorded in docs/benchmarks.md"
fi
