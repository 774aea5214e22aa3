#!/bin/sh
# Run `pgherd validate` over CloudNativePG's documentation samples and end-to-end fixtures, one
# file at a time (its webhook sees one object at a time), and print which files are refused.
#
#   scripts/cnpg-corpus.sh CNPG_CHECKOUT [PGHERD_BINARY]
#
# CNPG_CHECKOUT is a checkout (or `git archive`) of cloudnative-pg/cloudnative-pg holding
# docs/src/samples and tests/e2e/fixtures. The fixtures' `*.template` files are filled in as its
# e2e runner's envsubst would, with the values below (any valid names do: no rule looks at
# them). The result, and why each refused file is refused, is in docs/testing.md.
set -eu
src=${1:?usage: scripts/cnpg-corpus.sh CNPG_CHECKOUT [PGHERD_BINARY]}
pgherd=${2:-target/debug/pgherd}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export POSTGRES_IMG=ghcr.io/cloudnative-pg/postgresql:18.6-system-trixie PG_MAJOR=18
export AZURE_STORAGE_ACCOUNT=storageacct AZURE_BLOB_CONTAINER=container
export SNAPSHOT_PITR=2026-01-01T00:00:00Z SNAPSHOT_PLUGIN_PITR=2026-01-01T00:00:00Z
export SERVER_NAME=server-1 RECOVERY_SERVER_NAME=server-1
export OBJECT_STORE_NAME=minio-store RECOVERY_OBJECT_STORE_NAME=minio-store
export BARMAN_BACKUP_NAME=backup-1 BACKUP_NAME=backup-1
for v in SNAPSHOT_PITR_PGWAL SNAPSHOT_PITR_PGDATA SNAPSHOT_PLUGIN_PITR_PGWAL \
    SNAPSHOT_PLUGIN_PITR_PGDATA SNAPSHOT_PLUGIN_HOT_PGWAL SNAPSHOT_PLUGIN_HOT_PGDATA \
    SNAPSHOT_NAME_PGWAL SNAPSHOT_NAME_PGDATA REPLICA_CLUSTER_SNAPSHOT_NAME_PGWAL \
    REPLICA_CLUSTER_SNAPSHOT_NAME_PGDATA SNAPSHOT_PITR_PGTABLESPACE_tbs1 \
    SNAPSHOT_PITR_PGTABLESPACE_tbs2; do
    export "$v=$(echo "$v" | tr 'A-Z_' 'a-z-')"
done

total=0
refused=0
find "$src/docs/src/samples" "$src/tests/e2e/fixtures" -type f \
    \( -name '*.yaml' -o -name '*.yml' -o -name '*.yaml.template' \) | sort >"$work/files"
while read -r f; do
    out="$work/$(echo "${f#"$src"/}" | tr / _)"
    out=${out%.template}
    case "$out" in *.yml) ;; *.yaml) ;; *) out="$out.yaml" ;; esac
    envsubst <"$f" >"$out"
    total=$((total + 1))
    if ! "$pgherd" validate "$out" >"$work/result" 2>&1; then
        refused=$((refused + 1))
        echo "refused: ${f#"$src"/}"
        grep -v 'warning:' "$work/result" | grep -v '^invalid:' | sed 's/^/    /'
    fi
done <"$work/files"
echo "$total files, $((total - refused)) accepted, $refused refused"
