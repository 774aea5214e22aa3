#!/bin/sh
# Install the Debian packages the benchmarks need: Patroni (with psycopg2 and
# its etcd client) and etcd; pgBackRest, barman-cloud's clients and stunnel (pgBackRest talks
# to S3 over TLS only) for bench/backup.py.
# Idempotent: apt runs only when a package is missing.
set -eu

PACKAGES="patroni etcd-server python3-psycopg2 pgbackrest barman-cli-cloud postgresql-contrib stunnel4"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -z "$missing" ]; then
    echo "bench/install.sh: all packages present ($PACKAGES)"
else
    echo "bench/install.sh: installing$missing"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
fi

# bench/backup.py's S3 server: s3s-fs (Rust, crates.io), much faster than moto, which the
# bench falls back to. Built once (a few minutes); 0.14.1 is the last release that builds with
# this machine's Rust (1.95; 0.17 needs 1.96).
S3S_FS_VERSION=0.14.1
if command -v cargo >/dev/null 2>&1; then
    if ! "$HOME/.cargo/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        echo "bench/install.sh: building s3s-fs $S3S_FS_VERSION (cargo install)"
        cargo install --locked --features binary "s3s-fs@$S3S_FS_VERSION"
    fi
else
    echo "bench/install.sh: no cargo; bench/backup.py will use moto instead of s3s-fs"
fi
