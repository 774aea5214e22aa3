#!/usr/bin/env bash
# Build pgherd as one statically linked binary (musl), as the operator image ships it:
# target/x86_64-unknown-linux-musl/release/pgherd. Needs musl-tools and the Rust musl target
# (scripts/install.sh installs both). PGHERD_STATIC_PROFILE picks another cargo profile: the
# test suite uses `static-check` (same code and linkage, unoptimised, built in a third of the
# time) and finds it under target/x86_64-unknown-linux-musl/static-check/.
set -euo pipefail
cd "$(dirname "$0")/.."
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
exec cargo build --profile "${PGHERD_STATIC_PROFILE:-release}" --locked --target x86_64-unknown-linux-musl -p pgherd "$@"
