#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too:
#  1. installs moto's server (pinned, scripts/moto-requirements.txt) into .venv-test,
#  2. starts moto_server on a free 127.0.0.1 port,
#  3. checks formatting and clippy, runs `cargo test` with the AWS tests on
#     (feature aws-tests + SWITCHBOARD_TEST_AWS_ENDPOINT) and plain `cargo test`,
#  4. stops moto (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/moto.sh
. scripts/moto.sh

step() { printf '\n==> %s\n' "$*"; }

start_moto

export SWITCHBOARD_TEST_AWS_ENDPOINT="$MOTO_URL"
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
