# Sourced by scripts/test.sh and bench/*.sh: installs moto's server (pinned,
# scripts/moto-requirements.txt) into .venv-test and starts it on a free
# 127.0.0.1 port. After `start_moto`, MOTO_URL and MOTO_PID are set and an EXIT
# trap stops it.

VENV=.venv-test
MOTO_REQ=scripts/moto-requirements.txt

ensure_moto() {
  local stamp="$VENV/.installed-$(sha256sum "$MOTO_REQ" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    echo "==> installing moto into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$MOTO_REQ"
    touch "$stamp"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

stop_moto() {
  if [ -n "${MOTO_PID:-}" ]; then
    kill "$MOTO_PID" 2>/dev/null || true
    wait "$MOTO_PID" 2>/dev/null || true
  fi
}

start_moto() {
  ensure_moto
  mkdir -p target
  local port
  port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >target/moto.log 2>&1 &
  MOTO_PID=$!
  trap stop_moto EXIT
  MOTO_URL="http://127.0.0.1:$port"
  # Ready when it answers; give up after 60 s.
  local i
  for i in $(seq 1 300); do
    if curl -fs -o /dev/null "$MOTO_URL/moto-api/"; then
      echo "==> moto_server up at $MOTO_URL (log: target/moto.log)"
      return 0
    fi
    if ! kill -0 "$MOTO_PID" 2>/dev/null; then
      echo "moto_server exited; its log:" >&2
      cat target/moto.log >&2
      return 1
    fi
    sleep 0.2
  done
  echo "moto_server did not come up in 60 s" >&2
  return 1
}
