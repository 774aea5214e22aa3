#!/bin/sh
# The Kubernetes operator on kube-sim (release build): node-loss failover and operator memory.
#   ./bench/kubernetes.sh                       # 10 rounds, 100 Clusters
#   PGHERD_BENCH_ROUNDS=3 PGHERD_BENCH_CLUSTERS=20 ./bench/kubernetes.sh
# Needs root, util-linux and kubectl (scripts/install.sh). CloudNativePG cannot run on these
# machines (no container runtime): its figures in bench/README.md are from its documentation
# and defaults, not measured side by side.
set -eu
cd "$(dirname "$0")/.."
exec cargo test --release -p pgherd --test k8s_bench -- --ignored --nocapture --test-threads 1
