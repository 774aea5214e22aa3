#!/usr/bin/env bash
# Run every check and test pgherd has. Needs scripts/install.sh to have run.
# Slow tiers (chaos, benchmarks) are opt-in: PGHERD_SLOW=1 ./scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

log "cargo fmt --check"
cargo fmt --all -- --check

log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -q -- -D warnings

# Property tests run a bounded number of cases in CI; raise it locally for deeper runs.
export PROPTEST_CASES="${PROPTEST_CASES:-512}"

log "static build of the operator image's binary (musl; unoptimised profile static-check)"
PGHERD_STATIC_PROFILE=static-check ./scripts/build-static.sh -q
export PGHERD_STATIC_BINARY="${CARGO_TARGET_DIR:-$PWD/target}/x86_64-unknown-linux-musl/static-check/pgherd"

log "cargo test (unit, seeds, CRD drift, layering, robustness)"
cargo test --workspace --locked -q

log "schema tests (CRDs against the Kubernetes OpenAPI schema, manifests against the CRDs)"
python3 -m pytest -q tests/schema
