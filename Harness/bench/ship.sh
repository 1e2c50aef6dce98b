#!/usr/bin/env bash
# Shipping cost inside `protect` (issue 11): write GB of half-compressible data through a
# protected disk (1 MiB O_DIRECT writes), wait until the vault holds all of it, and report the
# protect process's CPU seconds and bytes read from disk per GB written. Give the lifeboat
# binaries to compare (a release build of another commit, say); default: this tree's.
#   bash Harness/bench/ship.sh [GB] [LIFEBOAT...]
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
gb=${1:-2}; shift || true
if [ $# -eq 0 ]; then
  swift build -c release --product lifeboat 2>&1 | tail -1
  set -- "$(swift build -c release --show-bin-path)/lifeboat"
fi
work=$(mktemp -d /var/tmp/lifeboat-ship.XXXXXX)
pid=""
cleanup() { set +e; [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid"; mountpoint -q "$work/mnt" && umount -l "$work/mnt"; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
# 256 MiB of data: each 64 KiB is 32 KiB random then 32 KiB zeros (2:1 for zstd).
python3 - "$work/data" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    for _ in range(4096): f.write(os.urandom(32768) + bytes(32768))
PY
for lifeboat in "$@"; do
  rm -rf "$work/site" "$work/vault"; mkdir -p "$work/mnt"
  "$lifeboat" init --site "$work/site" --vault "$work/vault" >/dev/null
  "$lifeboat" disk create disk --size 4G --site "$work/site" >/dev/null
  "$lifeboat" protect "$work/mnt" --site "$work/site" 2>"$work/protect.log" & pid=$!
  for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
  sleep 2  # initial replication of the empty disk
  read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u0 s0 _ < "/proc/$pid/stat"
  r0=$(awk '/^read_bytes/ {print $2}' "/proc/$pid/io")
  start=$(date +%s.%N)
  for i in $(seq 0 $((gb * 4 - 1))); do
    dd if="$work/data" of="$work/mnt/disk.img" bs=1M seek=$(( (i % 16) * 256 )) oflag=direct conv=notrunc,fsync status=none
  done
  # Until the vault holds every write: nothing pending in status.
  for _ in $(seq 600); do
    "$lifeboat" status --site "$work/site" --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["shipping"]; sys.exit(0 if s["pendingBytes"]==0 and s["pendingSegments"]==0 and not s.get("error") else 1)' && break
    sleep 0.5
  done
  end=$(date +%s.%N)
  read -r _ _ _ _ _ _ _ _ _ _ _ _ _ u1 s1 _ < "/proc/$pid/stat"
  r1=$(awk '/^read_bytes/ {print $2}' "/proc/$pid/io")
  tick=$(getconf CLK_TCK)
  python3 -c "
gb=$gb; cpu=(($u1-$u0)+($s1-$s0))/$tick; read=($r1-$r0)/1e9
print(f'$lifeboat: {gb} GB written and in the vault in {$end-$start:.1f} s; protect CPU {cpu/gb:.2f} s/GB, read from disk {read/gb:.2f} GB/GB')"
  kill -TERM "$pid"; wait "$pid" || true; pid=""
done
