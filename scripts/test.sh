#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too:
#  1. installs moto's server (pinned, scripts/moto-requirements.txt) into .venv-test,
#  2. starts moto_server on a free 127.0.0.1 port,
#  3. checks formatting and clippy, runs `cargo test` with the AWS tests on
#     (feature aws-tests + SWITCHBOARD_TEST_AWS_ENDPOINT) and plain `cargo test`,
#  4. stops moto (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=.venv-test
REQ=scripts/moto-requirements.txt
STAMP="$VENV/.installed-$(sha256sum "$REQ" | cut -c1-16)"

step() { printf '\n==> %s\n' "$*"; }

if [ ! -f "$STAMP" ]; then
  step "installing moto into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  touch "$STAMP"
fi

mkdir -p target
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
step "starting moto_server on 127.0.0.1:$PORT (log: target/moto.log)"
"$VENV/bin/moto_server" -H 127.0.0.1 -p "$PORT" >target/moto.log 2>&1 &
MOTO_PID=$!
cleanup() {
  kill "$MOTO_PID" 2>/dev/null || true
  wait "$MOTO_PID" 2>/dev/null || true
}
trap cleanup EXIT

# Ready when it answers; give up after 60 s.
for _ in $(seq 1 300); do
  if curl -fs -o /dev/null "http://127.0.0.1:$PORT/moto-api/"; then break; fi
  if ! kill -0 "$MOTO_PID" 2>/dev/null; then
    echo "moto_server exited; its log:" >&2
    cat target/moto.log >&2
    exit 1
  fi
  sleep 0.2
done
curl -fs -o /dev/null "http://127.0.0.1:$PORT/moto-api/" || { echo "moto_server did not come up in 60 s" >&2; exit 1; }

export SWITCHBOARD_TEST_AWS_ENDPOINT="http://127.0.0.1:$PORT"
# The tests configure the SDK explicitly; keep a developer's AWS settings out.
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_DYNAMODB || true

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --features aws-tests -- -D warnings

step "cargo test --features aws-tests (moto at $SWITCHBOARD_TEST_AWS_ENDPOINT)"
cargo test --features aws-tests

step "cargo test (default features: AWS tests compiled out)"
env -u SWITCHBOARD_TEST_AWS_ENDPOINT cargo test

step "all tests passed"
