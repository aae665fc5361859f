#!/usr/bin/env bash
# The local gateway inside the release `switchboard dev --ephemeral`, driven by
# real WebSocket clients (`cargo bench --bench ws_load`):
#   - idle connections held (10,000 and as many as this machine's open-file
#     limit allows) and the dev process's memory per connection,
#   - one message broadcast to 1,000 members of a session, end to end (client
#     send → every member received), p50/p99 over 50 messages,
#   - sustained messages/s from 100 clients (each in its own session, up to 8
#     messages in flight, every message echoed back through queue and worker),
#     in memory (--ephemeral) and on the durable store (--data-dir),
#   - paced: 100 clients × 10 messages/s for 30 s, every message echoed back:
#     how many were lost, p50/p99 end-to-end latency.
#
#   bench/gateway.sh [--record]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
RECORD=0
[ "${1:-}" = "--record" ] && RECORD=1
echo "==> cargo build --release (dev and bench tools)"
# BENCH_SKIP_BUILD=1 measures the binaries already built (e.g. while another
# build of the same tree would only re-link them).
[ "${BENCH_SKIP_BUILD:-0}" = 1 ] || cargo build --release --quiet --bin switchboard --benches
# The load tool itself, not `cargo bench` around it: the idle clients run in
# the background and are stopped by pid.
LOAD=("$(cargo bench --quiet --bench ws_load --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "ws_load"][-1])')")
WORK=$(mktemp -d)
DEV_PID=""
cleanup() { [ -n "$DEV_PID" ] && kill "$DEV_PID" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# start_dev [STORE_FLAGS...]: default --ephemeral (in memory); the durable
# sustained case passes --data-dir DIR (SQLite, every commit fsync'd).
start_dev() {
  PORT=$(free_port)
  local store=("$@")
  [ ${#store[@]} -gt 0 ] || store=(--ephemeral)
  # Presence events off: with them on, the 1,000 members joining the
  # broadcast session queue ~500,000 join frames (O(N²), docs/envelope.md)
  # ahead of the first measured message.
  SWITCHBOARD_LOG_FORMAT=json RUST_LOG=warn target/release/switchboard dev "${store[@]}" --presence-events off \
    --config bench/gateway.toml --listen "127.0.0.1:$PORT" >"$WORK/dev.out" 2>"$WORK/dev.log" &
  DEV_PID=$!
  # ws_load reads dev's CPU time around what it measures (per delivery, per message).
  export SWITCHBOARD_BENCH_DEV_PID=$DEV_PID
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0; sleep 0.1; done
  echo "dev did not come up" >&2; return 1
}
stop_dev() { kill -TERM "$DEV_PID"; wait "$DEV_PID" || true; DEV_PID=""; }
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$DEV_PID/status"; }

LIMIT=$(ulimit -n)
MAX_IDLE=$((LIMIT - 500))
ROWS=()
for N in 10000 "$MAX_IDLE"; do
  start_dev
  BEFORE=$(rss_kb)
  "${LOAD[@]}" idle "ws://127.0.0.1:$PORT/dev" "$N" 600 >"$WORK/idle.out" 2>&1 &
  LOAD_PID=$!
  for _ in $(seq 1 1200); do grep -q '^open' "$WORK/idle.out" && break; sleep 0.1; done
  grep '^open' "$WORK/idle.out" || { cat "$WORK/idle.out"; exit 1; }
  sleep 2   # let the server settle after the last handshake
  AFTER=$(rss_kb)
  kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true
  PER=$(echo "($AFTER - $BEFORE) / $N" | bc -l)
  printf 'idle %6d connections: dev RSS %.1f → %.1f MiB, %.1f KiB per connection\n' "$N" \
    "$(echo "$BEFORE/1024" | bc -l)" "$(echo "$AFTER/1024" | bc -l)" "$PER"
  ROWS+=("$(printf '| %s | %s | idle connections | %d held, %.1f KiB each (RSS %.0f → %.0f MiB) |' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$N" "$PER" "$(echo "$BEFORE/1024" | bc -l)" "$(echo "$AFTER/1024" | bc -l)")")
  stop_dev
done

start_dev
B=$("${LOAD[@]}" broadcast "ws://127.0.0.1:$PORT/dev" 1000 50 | tail -1)
echo "$B"
ROWS+=("$(printf '| %s | %s | broadcast to 1,000 members | %s |' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$B")")
stop_dev

start_dev
S=$("${LOAD[@]}" sustained "ws://127.0.0.1:$PORT/dev" 100 10 | tail -1)
echo "$S"
ROWS+=("$(printf '| %s | %s | sustained, 100 clients | %s |' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$S")")
stop_dev

# The same through the durable store `dev` runs on by default (a state
# directory; each group commit is an fsync).
start_dev --data-dir "$WORK/state"
S=$("${LOAD[@]}" sustained "ws://127.0.0.1:$PORT/dev" 100 10 | tail -1)
echo "durable: $S"
ROWS+=("$(printf '| %s | %s | sustained, 100 clients, durable (--data-dir) | %s |' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$S")")
stop_dev

start_dev
P=$("${LOAD[@]}" paced "ws://127.0.0.1:$PORT/dev" 100 10 30 | tail -1)
echo "$P"
ROWS+=("$(printf '| %s | %s | paced, 100 clients × 10/s for 30 s | %s |' "$(date -u +%F)" "$(git rev-parse --short HEAD)" "$P")")
stop_dev

if [ "$RECORD" = 1 ]; then
  printf '%s\n' "${ROWS[@]}" >"$WORK/rows"
  record_rows "$WORK/rows" "gateway rows"
fi
echo "machine: $(machine); open-file limit $LIMIT"
