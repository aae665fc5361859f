#!/usr/bin/env bash
# Two builds of `switchboard dev` side by side on the same machine in one
# sitting (the machine is shared and noisy: only same-sitting figures compare):
# for each MODE (broadcast: one message to 1,000 members × 50 rounds;
# sustained: 100 clients for 10 s in memory; durable: the same on a state
# directory, fsync'd), runs BASE, NEW, BASE, NEW and prints each
# run's result line with dev's CPU seconds (utime + stime from /proc).
#
#   bench/gateway-compare.sh BASE_CHECKOUT NEW_CHECKOUT
#
# Each checkout needs `cargo build --release --bin switchboard` done; the load
# tool is this checkout's `ws_load` bench (built here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
[ $# -eq 2 ] || { echo "usage: bench/gateway-compare.sh BASE_CHECKOUT NEW_CHECKOUT" >&2; exit 2; }
BASE=$(cd "$1" && pwd); NEW=$(cd "$2" && pwd)
for d in "$BASE" "$NEW"; do
  [ -x "$d/target/release/switchboard" ] || { echo "$d/target/release/switchboard: build it first (cargo build --release --bin switchboard)" >&2; exit 2; }
done
LOAD=$(cargo bench --quiet --bench ws_load --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json, sys; print([m["executable"] for m in map(json.loads, sys.stdin) if m.get("executable") and m["target"]["name"] == "ws_load"][-1])')
CONFIG=$PWD/bench/gateway.toml
DEV_PID=""
trap '[ -n "$DEV_PID" ] && kill "$DEV_PID" 2>/dev/null || true' EXIT

run() { # run CHECKOUT MODE
  local port out store=(--ephemeral) state=""
  port=$(free_port)
  if [ "$2" = durable ]; then state=$(mktemp -d); store=(--data-dir "$state"); fi
  # Presence events off (as bench/gateway.sh; the variable, not the flag,
  # so that builds from before the flag still run).
  SWITCHBOARD_PRESENCE_EVENTS=off RUST_LOG=warn "$1/target/release/switchboard" dev "${store[@]}" --config "$CONFIG" \
    --listen "127.0.0.1:$port" >/dev/null 2>&1 &
  DEV_PID=$!
  for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
  case $2 in
    broadcast) out=$("$LOAD" broadcast "ws://127.0.0.1:$port/dev" 1000 50 | tail -1) ;;
    sustained | durable) out=$("$LOAD" sustained "ws://127.0.0.1:$port/dev" 100 10 | tail -1) ;;
  esac
  local ticks
  ticks=$(awk '{print $14 + $15}' "/proc/$DEV_PID/stat")
  kill "$DEV_PID"; wait "$DEV_PID" 2>/dev/null || true; DEV_PID=""
  [ -z "$state" ] || rm -rf "$state"
  printf '%s (%s): %s dev_cpu_s=%.2f\n' "$(git -C "$1" rev-parse --short HEAD)" "$1" "$out" "$(echo "$ticks / $(getconf CLK_TCK)" | bc -l)"
}

for mode in broadcast sustained durable; do
  for d in "$BASE" "$NEW" "$BASE" "$NEW"; do run "$d" "$mode"; done
done
echo "machine: $(machine)"
