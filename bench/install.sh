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
    exit 0
fi

echo "bench/install.sh: installing$missing"
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
$SUDO apt-get update
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends $missing
