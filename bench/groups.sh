#!/usr/bin/env bash
# Throughput across message groups: M messages (default 4,000) spread over 1, 10,
# 100 and 1,000 groups (sessions, one connection each) through the release
# `switchboard worker` on the embedded queue, to nginx (which logs each body so
# order can be checked). Prints messages/s and whether every group's messages
# arrived in send order.
#
#   bench/groups.sh [MESSAGES] [--record]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
TOTAL=4000
RECORD=0
for a in "$@"; do
  case "$a" in
    --record) RECORD=1 ;;
    *[!0-9]*) echo "usage: bench/groups.sh [MESSAGES] [--record]" >&2; exit 2 ;;
    *) TOTAL=$a ;;
  esac
done
ensure_tools
echo "==> cargo build --release (worker and bench tools)"
cargo build --release --quiet --bin switchboard --benches
BIN=target/release/switchboard
WORK=$(mktemp -d)
WORKER_PID=""
cleanup() { [ -n "$WORKER_PID" ] && kill "$WORKER_PID" 2>/dev/null || true; stop_sink "$WORK"; rm -rf "$WORK"; }
trap cleanup EXIT
start_sink "$WORK" body
printf '\n%7s %9s %10s %10s %12s\n' groups messages seconds msgs/s order
for G in 1 10 100 1000; do
  PER=$((TOTAL / G))
  N=$((PER * G))
  DIR="$WORK/store-$G"
  cargo bench --quiet --bench seed -- "$DIR" "$G" 1 "$PER" 64 2>/dev/null
  : >"$WORK/access.log"
  SWITCHBOARD_LOG_FORMAT=json "$BIN" worker --data-dir "$DIR" \
    --queue-url embedded://switchboard-inbound.fifo \
    --callback-url "http://127.0.0.1:$SINK_PORT/bench" \
    --metrics-addr "127.0.0.1:$(free_port)" 2>"$WORK/worker-$G.log" &
  WORKER_PID=$!
  wait_lines "$WORK/access.log" "$N" 600 "$WORKER_PID"
  kill -TERM "$WORKER_PID"; wait "$WORKER_PID" || true; WORKER_PID=""
  RESULT=$(python3 - "$WORK/access.log" <<'PY'
import sys, re, json
first = last = None
seqs = {}
ok = True
for line in open(sys.argv[1]):
    t, uri, body = line.rstrip("\n").split(" ", 2)
    t = float(t)
    first = t if first is None else min(first, t)
    last = t if last is None else max(last, t)
    body = re.sub(r"\\x([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), body)
    f = json.loads(body)
    s = f["sessionId"]
    seq = f["payload"]["seq"]
    if seqs.get(s, -1) + 1 != seq:
        ok = False
    seqs[s] = seq
print(f"{last - first:.3f} {'in-order' if ok else 'OUT-OF-ORDER'}")
PY
)
  read -r SECS ORDER <<<"$RESULT"
  RATE=$(echo "$N / $SECS" | bc -l)
  printf '%7d %9d %10.2f %10.0f %12s\n' "$G" "$N" "$SECS" "$RATE" "$ORDER"
  if [ "$RECORD" = 1 ]; then
    printf '| %s | %s | %d | %d | %.0f | %s | `bench/groups.sh %d` |\n' "$(date -u +%F)" "$(git rev-parse --short HEAD)" \
      "$G" "$N" "$RATE" "$ORDER" "$TOTAL" >>"$WORK/rows"
  fi
done
if [ "$RECORD" = 1 ]; then
  record_rows "$WORK/rows" "groups rows"
fi
echo "machine: $(machine)"
