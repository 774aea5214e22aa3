#!/bin/sh
# Install the Debian packages the benchmarks need: Patroni (with psycopg2 and
# its etcd client) and etcd; pgBackRest, barman-cloud's clients and stunnel (pgBackRest talks
# to S3 over TLS only) for bench/backup.py.
# Idempotent: apt runs only when a package is missing.
set -eu

PACKAGES="patroni etcd-server python3-venv python3-psycopg2 pgbackrest barman-cli-cloud postgresql-contrib stunnel4"

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

# Patroni from PyPI in a venv of its own, run by bench/lib (Debian's 3.0.2 stays installed for
# its dependencies): 3.0.2 has a stale etcd3 cache after a failed compare-and-set that can leave
# its synchronous-standby key unset for good after a failover (patroni/patroni#2779, fixed
# upstream), which stopped the failover bench's Patroni rows after one kill.
PATRONI_VERSION=4.1.5
PATRONI_VENV=/usr/local/lib/pgherd-bench/patroni-4
if ! "$PATRONI_VENV/bin/patroni" --version 2>/dev/null | grep -q "$PATRONI_VERSION"; then
    echo "bench/install.sh: installing Patroni $PATRONI_VERSION (PyPI) into $PATRONI_VENV"
    rm -rf "$PATRONI_VENV"
    /usr/bin/python3 -m venv "$PATRONI_VENV"
    "$PATRONI_VENV/bin/pip" install -q "patroni[etcd3,psycopg2-binary]==$PATRONI_VERSION"
fi

# bench/backup.py's S3 server: s3s-fs (Rust, crates.io), much faster than moto, which the
# bench falls back to. 0.14.1 is the last release that builds with this machine's Rust (1.95;
# 0.17 needs 1.96). Stock s3s-fs leaves Nagle's algorithm on the connections it accepts: a
# request on a reused keep-alive connection then waits ~40 ms for the delayed ACK, which made
# per-request clients (pgBackRest restores one GET per file) look slow. It is built here from
# the crates.io source with one line added (`set_nodelay(true)` on every accepted socket),
# into /usr/local/lib/pgherd-bench/s3s-fs-nodelay (a few minutes, once). bench/backup.py
# measures the per-request latency on a reused connection and refuses to run when it is large.
S3S_FS_VERSION=0.14.1
S3S_FS_ROOT=/usr/local/lib/pgherd-bench/s3s-fs-nodelay
if command -v cargo >/dev/null 2>&1; then
    if ! "$S3S_FS_ROOT/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
        echo "bench/install.sh: building s3s-fs $S3S_FS_VERSION with TCP_NODELAY (cargo install)"
        work=$(mktemp -d)
        trap 'rm -rf "$work"' EXIT
        # Fetch the published crate's source through cargo (an empty crate depending on it).
        mkdir -p "$work/fetch/src"
        printf '[package]\nname = "fetch"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ns3s-fs = "=%s"\n' \
            "$S3S_FS_VERSION" >"$work/fetch/Cargo.toml"
        : >"$work/fetch/src/lib.rs"
        src=$(cd "$work/fetch" && cargo metadata --format-version 1 |
            python3 -c 'import json, sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "s3s-fs"))')
        cp -r "$(dirname "$src")" "$work/s3s-fs"
        main="$work/s3s-fs/src/main.rs"
        grep -q 'let conn = http_server.serve_connection(TokioIo::new(socket)' "$main"
        sed -i 's/^\( *\)let conn = http_server.serve_connection(TokioIo::new(socket)/\1let _ = socket.set_nodelay(true);\n&/' "$main"
        grep -q 'socket.set_nodelay(true)' "$main"
        env -u CARGO_TARGET_DIR cargo install --locked --features binary --root "$S3S_FS_ROOT" --path "$work/s3s-fs"
    fi
else
    echo "bench/install.sh: no cargo; bench/backup.py will use moto instead of s3s-fs"
fi
