#!/bin/bash
# CloudNativePG's archive_command around barman-cloud-wal-archive, in shell (the instance
# manager's `wal-archive`, pkg/management/postgres/archiver): when PostgreSQL asks for WAL file
# %p, archive it together with up to MAX_PARALLEL - 1 other files PostgreSQL has marked
# .ready, one barman-cloud-wal-archive process per file, all at once; the extra files that
# succeeded are recorded in SPOOL, and PostgreSQL's later call for one of them returns at once.
#
# usage: cnpg-wal-archive.sh MAX_PARALLEL SPOOL %p barman-cloud-wal-archive [options] URL SERVER
# (the WAL path is appended to the command). Run with PGDATA as the working directory.
set -u
max=$1 spool=$2 wal=$3
shift 3
name=$(basename "$wal")
dir=$(dirname "$wal")
if [ -e "$spool/$name" ]; then
    rm -f "$spool/$name"
    exit 0
fi
files=("$name")
if [ "$max" -gt 1 ]; then
    for ready in $(cd "$dir/archive_status" && ls -- *.ready 2>/dev/null | sort); do
        other=${ready%.ready}
        [ "$other" = "$name" ] && continue
        [ -e "$spool/$other" ] && continue
        files+=("$other")
        [ "${#files[@]}" -ge "$max" ] && break
    done
fi
pids=()
for file in "${files[@]}"; do
    "$@" "$dir/$file" &
    pids+=($!)
done
status=0
for i in "${!files[@]}"; do
    if wait "${pids[$i]}"; then
        [ "$i" -gt 0 ] && : >"$spool/${files[$i]}"
    elif [ "$i" -eq 0 ]; then
        status=1
    fi
done
exit $status
