#!/usr/bin/env bash
# Runs the Dockerfile's build stages without a Docker engine, to prove they work
# and to measure them: the build context (minus .dockerignore), `cargo chef
# prepare` in a copy of it, `cargo chef cook` in an empty directory holding only
# the recipe (the cached dependency layer), then the final `cargo build`.
# Uses the host's toolchain instead of the rust image (same Rust version expected),
# and cargo-chef at the Dockerfile's pinned version (installed under WORK if absent).
#
#   scripts/docker-build-check.sh [WORK]      # WORK defaults to a fresh temp dir
#
# Slow (a cold release build of every dependency): not part of scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=${1:-$(mktemp -d)}
mkdir -p "$WORK"
CHEF_VERSION=$(sed -n 's/^ARG CARGO_CHEF_VERSION=//p' Dockerfile)
RUST_VERSION=$(sed -n 's/^ARG RUST_VERSION=//p' Dockerfile)
case "$(rustc --version)" in
  "rustc $RUST_VERSION"*) ;;
  *) echo "note: host has $(rustc --version), the Dockerfile pins Rust $RUST_VERSION" >&2 ;;
esac

if [ ! -x "$WORK/chef/bin/cargo-chef" ]; then
  cargo install cargo-chef --locked --version "$CHEF_VERSION" --root "$WORK/chef"
fi
# `cargo chef` (as a cargo subcommand, the way the Dockerfile calls it).
export PATH="$WORK/chef/bin:$PATH"

# The build context: everything but what .dockerignore names.
# (Top-level names and `!path` exceptions: all that .dockerignore uses here.)
EXCLUDES=()
KEEP=()
while read -r line; do
  case "$line" in
    ''|'#'*) continue ;;
    '!'*) KEEP+=("${line#!}") ;;
    *) EXCLUDES+=("--exclude=./$line") ;;
  esac
done < .dockerignore
rm -rf "$WORK/context" "$WORK/planner" "$WORK/app"
mkdir -p "$WORK/context" "$WORK/planner" "$WORK/app"
tar -C "$ROOT" "${EXCLUDES[@]}" -cf - . | tar -C "$WORK/context" -xf -
for path in "${KEEP[@]}"; do
  mkdir -p "$WORK/context/$(dirname "$path")"
  cp -a "$ROOT/$path" "$WORK/context/$path"
done

# Stage planner: COPY . . ; cargo chef prepare
cp -a "$WORK/context/." "$WORK/planner/"
(cd "$WORK/planner" && cargo chef prepare --recipe-path recipe.json)

# Stage builder: the recipe alone, cook, then the sources and the real build.
cp "$WORK/planner/recipe.json" "$WORK/app/"
export CARGO_TARGET_DIR="$WORK/app/target"
start=$(date +%s)
(cd "$WORK/app" && cargo chef cook --release --locked --bin switchboard --recipe-path recipe.json)
cooked=$(date +%s)
cp -a "$WORK/context/." "$WORK/app/"
(cd "$WORK/app" && cargo build --release --locked --bin switchboard)
built=$(date +%s)

BIN=$WORK/app/target/release/switchboard
"$BIN" --version
echo "dependencies (cook): $((cooked - start)) s; switchboard: $((built - cooked)) s; binary: $(du -h "$BIN" | cut -f1)"
