# syntax=docker/dockerfile:1
#
# The worker image: `switchboard worker` on ECS/Fargate (see ecs/ and
# docs/operations.md). Three stages:
#   chef     - the Rust toolchain plus cargo-chef (pinned);
#   planner  - reduces the manifests to a recipe (dependencies only);
#   builder  - builds the dependencies from the recipe (a layer that stays
#              cached until Cargo.toml/Cargo.lock change), then our crate;
#   runtime  - distroless cc: glibc, CA certificates, no shell, non-root.
#
# cargo-chef instead of a hand-made stub main: the manifest declares more than
# one target (Lambda binaries behind the `lambda` feature, tests, benches) and a
# stub has to be kept in step with every one of them; cargo-chef derives the
# skeleton from the manifests themselves.
#
# The toolchain image and the runtime image are both Debian 12 (bookworm), so
# the binary links against the glibc it runs with.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
ARG CARGO_CHEF_VERSION
RUN cargo install cargo-chef --locked --version "${CARGO_CHEF_VERSION}"
WORKDIR /app

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# Cargo features of the image: empty by default; `--build-arg FEATURES=otel`
# adds the trace exporter (docs/operations.md, section 10).
ARG FEATURES=""
COPY --from=planner /app/recipe.json recipe.json
# Dependencies only: rebuilt when the recipe (manifests, lock file) changes.
RUN cargo chef cook --release --locked --features "${FEATURES}" --bin switchboard --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --features "${FEATURES}" --bin switchboard

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard worker: SQS FIFO consumer with @connections fan-out" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /app/target/release/switchboard /usr/local/bin/switchboard
# distroless's `nonroot` user, by number so that runAsNonRoot checks can verify it.
USER 65532:65532
# /metrics, /healthz, /readyz (--metrics-addr, default 0.0.0.0:9464).
EXPOSE 9464
# The worker drains on SIGTERM within --shutdown-grace (25 s); ECS's
# stopTimeout (task definition) must be longer.
STOPSIGNAL SIGTERM
# No HEALTHCHECK: ECS uses the task definition's healthCheck
# (`switchboard healthcheck`, as the image has no shell or curl).
ENTRYPOINT ["switchboard"]
CMD ["worker"]
