#!/usr/bin/env bash
# Failover benchmarks (issue 13). Release build; needs root and /dev/fuse.
#   bash Harness/bench/failover.sh rto [SIZES...]      default: 1G 4G 16G
#   bash Harness/bench/failover.sh reprotect [SIZE] [PERCENT]   default: 16G 1
# rto: a disk of each size with 64 MiB of random data spread over it (16 pieces) and a point in
# the site's vault; then, timed from the command: `lifeboat failover --point latest`, `protect`
# of the failed-over site, and the first 4 KiB O_DIRECT write acknowledged on its disk (the RTO:
# command to writable and protected); then how long the background fill of the whole disk
# takes (as `status` sees it: to within a second), against `lifeboat export` of the same point
# (a whole-disk copy before the first write, what the fill saves).
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
part=${1:-rto}
shift || true
sizes=("${@:-1G 4G 16G}")
[ ${#sizes[@]} -eq 1 ] && read -r -a sizes <<<"${sizes[0]}"
swift build -c release --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build -c release --show-bin-path)/lifeboat
work=$(mktemp -d /var/tmp/lifeboat-failover.XXXXXX)
pids=()
cleanup() {
  set +e
  for m in "$work"/*/mnt "$work"/*/mnt-b; do mountpoint -q "$m" && umount "$m"; done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in

now() { date +%s.%N; }
wait_mounted() { for _ in $(seq 200); do mountpoint -q "$1" && return 0; sleep 0.05; done; return 1; }

# DIR SIZE: a site with its vault in DIR, one empty disk d0 of SIZE, protected at DIR/mnt.
protected_site() {
  mkdir -p "$1/mnt" "$1/mnt-b"
  "$lifeboat" init --site "$1/site" --vault "$1/vault" >/dev/null
  "$lifeboat" disk create d0 --size "$2" --site "$1/site" >/dev/null
  "$lifeboat" protect "$1/mnt" --site "$1/site" 2>"$1/protect.log" & pids+=($!)
  wait_mounted "$1/mnt"
}

rto() {
  echo "| disk | failover command | to first write acknowledged (RTO) | fill of the whole disk | export of the point (a copy first) |"
  echo "|---|---:|---:|---:|---:|"
  for size in "${sizes[@]}"; do
    local d="$work/$size"
    protected_site "$d" "$size"
    local bytes blocks
    bytes=$(stat -c %s "$d/mnt/d0.img")
    for k in $(seq 0 15); do
      dd if=/dev/urandom of="$d/mnt/d0.img" bs=4M count=1 seek=$((bytes / 16 * k / (4 << 20))) conv=notrunc status=none
    done
    sync "$d/mnt/d0.img"
    "$lifeboat" checkpoint --site "$d/site" --timeout 120s >/dev/null
    umount "$d/mnt"; wait "${pids[-1]}"
    local t0 t1 t2 t3
    t0=$(now)
    "$lifeboat" failover --vault "$d/vault" --point latest --to "$d/recovered" --yes >/dev/null 2>&1
    t1=$(now)
    "$lifeboat" protect "$d/mnt-b" --site "$d/recovered" 2>"$d/protect-b.log" & pids+=($!)
    # dd must not create the file on the empty mountpoint before the mount: wait for it first.
    until mountpoint -q "$d/mnt-b"; do sleep 0.01; done
    dd if=/dev/urandom of="$d/mnt-b/d0.img" bs=4k count=1 seek=1 oflag=direct conv=notrunc,fsync status=none
    t2=$(now)
    # Filled: status (rewritten every second by protect) no longer counts bytes read from the vault.
    sleep 1.1
    while "$lifeboat" status --site "$d/recovered" --json | grep -q unfilledBytes; do sleep 0.2; done
    t3=$(now)
    umount "$d/mnt-b"; wait "${pids[-1]}"
    local e0 e1
    e0=$(now)
    "$lifeboat" export --vault "$d/vault" --point 1 --disk d0 "$d/export.raw" >/dev/null
    e1=$(now)
    awk -v s="$size" -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" -v e="$e0" -v f="$e1" \
      'BEGIN { printf "| %s | %.2f s | %.2f s | %.1f s | %.1f s |\n", s, b - a, c - a, d - c, f - e }'
    rm -rf "$d"
  done
}

# reprotect: the old site writes PERCENT of the disk after the point a failover then picks (its
# own writes after the fork), the failed-over site writes another PERCENT elsewhere; re-protect
# of the old site must move their union and nothing else. Timed against a full checksum scan at
# ASR's documented 45-80 MB/s (what its re-protect reads of a disk this size).
write_percent() {  # IMAGE SIZE_BYTES PERCENT SEED: 1 MiB pieces at distinct random MiB offsets
  python3 - "$@" <<'PY'
import os, random, sys
path, size, percent, seed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
mib = size >> 20
rng = random.Random(seed)
pieces = rng.sample(range(mib), max(1, int(mib * percent / 100)))
fd = os.open(path, os.O_WRONLY)
for p in pieces:
    os.pwrite(fd, os.urandom(1 << 20), p << 20)
os.fsync(fd)
os.close(fd)
PY
}

reprotect() {
  local size=${sizes[0]:-16G} percent=${sizes[1]:-1}
  local d="$work/reprotect"
  protected_site "$d" "$size"
  local bytes
  bytes=$(stat -c %s "$d/mnt/d0.img")
  write_percent "$d/mnt/d0.img" "$bytes" 5 1
  local fork
  fork=$("$lifeboat" checkpoint --site "$d/site" --timeout 300s --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["pointID"])')
  write_percent "$d/mnt/d0.img" "$bytes" "$percent" 2   # the old site's own, after the fork
  "$lifeboat" checkpoint --site "$d/site" --timeout 300s >/dev/null
  umount "$d/mnt"; wait "${pids[-1]}"
  "$lifeboat" failover --vault "$d/vault" --point "$fork" --to "$d/recovered" --yes >/dev/null 2>&1
  "$lifeboat" protect "$d/mnt-b" --site "$d/recovered" 2>"$d/protect-b.log" & pids+=($!)
  wait_mounted "$d/mnt-b"
  write_percent "$d/mnt-b/d0.img" "$bytes" "$percent" 3
  until "$lifeboat" checkpoint --site "$d/recovered" --timeout 300s >/dev/null 2>&1; do sleep 0.5; done  # after the fill
  umount "$d/mnt-b"; wait "${pids[-1]}"
  "$lifeboat" failover commit --vault "$d/vault" >/dev/null
  local t0 t1
  t0=$(now)
  "$lifeboat" reprotect --site "$d/site" --json >"$d/reprotect.json"
  t1=$(now)
  cmp "$d/site/disks/d0.img" "$d/recovered/disks/d0.img" || { echo "reprotect: the disks differ" >&2; exit 1; }
  python3 - "$d/reprotect.json" "$t0" "$t1" "$size" "$percent" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); t = float(sys.argv[3]) - float(sys.argv[2])
d = r["disks"][0]
changed = (d["replacedHereBlocks"] + d["writtenThereBlocks"]) * 4096   # counted apart: a block changed on both sides counts twice
moved = r["bytesMoved"]
size = r["diskBytes"]
print(f"| disk | changed here / there | moved | moved / changed | time | ASR scan at 80 / 45 MB/s |")
print(f"|---|---:|---:|---:|---:|---:|")
print(f"| {sys.argv[4]} ({sys.argv[5]}% each side) | {d['replacedHereBlocks']*4096/2**20:.0f} / {d['writtenThereBlocks']*4096/2**20:.0f} MiB | "
      f"{moved/2**20:.0f} MiB in {d['extents']} extents | {moved/changed:.3f} | {t:.1f} s | {size/80e6:.0f} / {size/45e6:.0f} s |")
PY
}

case "$part" in
  rto) rto ;;
  reprotect) reprotect ;;
  *) echo "usage: $0 rto [SIZES...] | reprotect [SIZE] [PERCENT]" >&2; exit 64 ;;
esac
