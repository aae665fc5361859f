#!/usr/bin/env bash
# Runs every test of the project, on a fresh machine too:
#  1. installs moto's server (pinned, scripts/moto-requirements.txt) and the
#     deployment-file linters (scripts/lint-requirements.txt) into .venv-test,
#  2. starts moto_server on a free 127.0.0.1 port,
#  3. installs Debian's chromium (pinned major version) for the demo-page test,
#  4. checks rust-version against the locked dependencies (check-msrv.py),
#     known advisories (../shared/tools/advisories.py), formatting and
#     clippy, runs `cargo test` with the AWS, browser and Lambda tests and the
#     trace exporter on (features aws-tests, browser-tests, lambda, otel;
#     SWITCHBOARD_TEST_AWS_ENDPOINT) and plain `cargo test`,
#  5. stops moto (also on failure).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/moto.sh
. scripts/moto.sh

step() { printf '\n==> %s\n' "$*"; }

start_moto

# Linters for Dockerfile and deploy/template.json, pinned, in moto's venv
# (cfn-lint itself comes with moto's pins).
LINT_REQ=scripts/lint-requirements.txt
LINT_STAMP="$VENV/.lint-installed-$(sha256sum "$LINT_REQ" | cut -c1-16)"
if [ ! -f "$LINT_STAMP" ]; then
  step "installing linters into $VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$LINT_REQ"
  touch "$LINT_STAMP"
fi

# Chromium for tests/demo_browser.rs; upstream major pinned, the Debian
# revision floats (security updates replace old builds on the mirror).
CHROMIUM_VERSION="156.*"
if ! command -v /usr/bin/chromium >/dev/null; then
  step "installing chromium=$CHROMIUM_VERSION from Debian"
  apt-get update -qq >/dev/null || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "chromium=$CHROMIUM_VERSION" >/dev/null
fi

export SWITCHBOARD_TEST_AWS_ENDPOINT="$MOTO_URL"
# botocore (installed with moto) signs the same requests as the lean
# @connections client in tests/push_parity.rs.
export SWITCHBOARD_TEST_PYTHON="$PWD/$VENV/bin/python"
# The tests configure the SDK explicitly; keep a developer's AWS settings out.
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SQS AWS_ENDPOINT_URL_DYNAMODB || true

step "rust-version is the locked dependencies' minimum"
python3 scripts/check-msrv.py

# Known advisories against Cargo.lock: the checker and its database live in
# ../shared beside the clone (as in CI); any line it prints is a finding.
ADVISORIES_TOOL=../shared/tools/advisories.py
ADVISORY_DB=../shared/advisory-db
step "advisories in Cargo.lock"
if [ ! -f "$ADVISORIES_TOOL" ] || [ ! -d "$ADVISORY_DB" ]; then
  echo "advisory check: $ADVISORIES_TOOL or $ADVISORY_DB missing (expected ../shared beside the clone)" >&2
  exit 1
fi
findings=$(python3 "$ADVISORIES_TOOL" Cargo.lock "$ADVISORY_DB")
if [ -n "$findings" ]; then
  printf '%s\n' "$findings" >&2
  echo "advisory check: Cargo.lock has crates with known advisories (above)" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --all-targets --features aws-tests,browser-tests,lambda,otel -- -D warnings

step "cfn-lint deploy/template.json"
"$VENV/bin/cfn-lint" --regions us-east-1 eu-west-1 --include-checks I -- deploy/template.json

step "hadolint Dockerfile"
"$VENV/bin/hadolint" Dockerfile

step "cargo test --features aws-tests,browser-tests,lambda,otel (moto at $SWITCHBOARD_TEST_AWS_ENDPOINT)"
cargo test --features aws-tests,browser-tests,lambda,otel

step "cargo test (default features: AWS, browser and Lambda tests and the exporter compiled out)"
env -u SWITCHBOARD_TEST_AWS_ENDPOINT cargo test

step "all tests passed"
