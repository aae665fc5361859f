#!/usr/bin/env bash
# Cold start: from exec of the release `switchboard worker` (embedded store,
# --wait-time-seconds 0) to its first completed receive, as seen on /metrics
# (switchboard_polls_total > 0); median and max of 20 runs. And the size of the
# release binary (the one the Dockerfile ships).
#
#   bench/coldstart.sh [--record]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
echo "==> cargo build --release"
cargo build --release --quiet --bin switchboard
BIN=target/release/switchboard
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
TIMES=()
for i in $(seq 1 20); do
  PORT=$(free_port)
  START=$(date +%s%N)
  SWITCHBOARD_LOG_FORMAT=json "$BIN" worker --data-dir "$WORK/store" --queue-url embedded://switchboard-inbound.fifo \
    --callback-url http://127.0.0.1:9/bench --metrics-addr "127.0.0.1:$PORT" --wait-time-seconds 0 2>/dev/null &
  PID=$!
  for _ in $(seq 1 2000); do
    if curl -fs "http://127.0.0.1:$PORT/metrics" 2>/dev/null | grep -qE '^switchboard_polls_total\{result="(empty|messages)"\} [1-9]'; then break; fi
    sleep 0.002
  done
  END=$(date +%s%N)
  kill -TERM "$PID"; wait "$PID" || true
  TIMES+=("$(( (END - START) / 1000000 ))")
done
SORTED=$(printf '%s\n' "${TIMES[@]}" | sort -n)
MEDIAN=$(echo "$SORTED" | sed -n 10p)
MAX=$(echo "$SORTED" | tail -1)
SIZE=$(stat -c %s "$BIN")
printf 'start to first poll: median %d ms, max %d ms (20 runs)\n' "$MEDIAN" "$MAX"
printf 'release binary: %.1f MiB\n' "$(echo "$SIZE / 1048576" | bc -l)"
if [ "${1:-}" = "--record" ]; then
  ROW=$(printf '| %s | %s | start to first poll (embedded store) median %d ms, max %d ms; release binary %.1f MiB | `bench/coldstart.sh` |' \
    "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$MEDIAN" "$MAX" "$(echo "$SIZE / 1048576" | bc -l)")
  printf '%s\n' "$ROW" >"$WORK/rows"
  record_rows "$WORK/rows" "coldstart rows"
fi
echo "machine: $(machine)"
