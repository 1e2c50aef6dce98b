#!/usr/bin/env bash
# Drill RTO (issue 5): the time from drill start to every check done, for an ext4 disk with a
# crash-consistent point taken while the filesystem is mounted (so the drill replays its
# journal), with the plan `digest` + `fsck` (+ the mount that replays the journal).
# Cases: disk size × share of the disk written. Prints one line per case:
#   size written rto digest fsck
# Usage: Harness/bench/drill.sh [SIZE:PERCENT ...]   (default 1G:10 4G:10 4G:50 8G:10)
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
swift build -c release --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build -c release --show-bin-path)/lifeboat
cases=("$@")
[ ${#cases[@]} -gt 0 ] || cases=(1G:10 4G:10 4G:50 8G:10)

work="" protect="" loopdev=""
cleanup() {
  set +e
  [ -n "$work" ] && mountpoint -q "$work/fs" && umount "$work/fs"
  [ -n "$loopdev" ] && losetup -d "$loopdev"
  [ -n "$protect" ] && kill -TERM "$protect" 2>/dev/null && wait "$protect"
  [ -n "$work" ] && { mountpoint -q "$work/m" && umount -l "$work/m"; rm -rf "$work"; }
  work="" protect="" loopdev=""
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in

printf "%-6s %-8s %8s %8s %8s\n" size written rto_s digest_s fsck_s
for c in "${cases[@]}"; do
  size=${c%%:*} pct=${c##*:}
  work=$(mktemp -d /var/tmp/lifeboat-drill-bench.XXXXXX)
  mkdir -p "$work/m" "$work/fs"
  export LIFEBOAT_SITE=$work/site LIFEBOAT_VAULT=$work/vault LIFEBOAT_DRILL_DIR=$work/drills
  "$lifeboat" init >/dev/null
  "$lifeboat" disk create d0 --size "$size" >/dev/null
  "$lifeboat" protect "$work/m" 2>"$work/protect.log" & protect=$!
  for _ in $(seq 100); do mountpoint -q "$work/m" && break; sleep 0.1; done
  mkfs.ext4 -q -F "$work/m/d0.img"
  loopdev=$(losetup -f --show "$work/m/d0.img")
  mount "$loopdev" "$work/fs"
  bytes=$(( $(blockdev --getsize64 "$loopdev") * pct / 100 ))
  # Incompressible data in 256 MiB files (the vault stores what it gets; zstd cannot shrink it).
  head -c $((256 << 20)) /dev/urandom > "$work/chunk"
  n=0
  while [ $((n * (256 << 20))) -lt "$bytes" ]; do
    left=$((bytes - n * (256 << 20)))
    head -c $(( left < (256 << 20) ? left : (256 << 20) )) "$work/chunk" > "$work/fs/data$n.bin"
    n=$((n + 1))
  done
  rm -f "$work/chunk"
  sync -f "$work/fs"
  # Crash-consistent, with the filesystem mounted: the drill must replay its journal.
  "$lifeboat" checkpoint --label bench >/dev/null
  printf 'disks:\n  d0:\n    filesystem: ext4\n    checks: [digest, fsck]\n' > "$work/plan.yaml"
  "$lifeboat" drill "$work/plan.yaml" --point latest --report-json "$work/report.json" >/dev/null 2>&1
  python3 - "$work/report.json" "$size" "$pct" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
checks = {c["name"]: c["seconds"] for d in r["disks"] for c in d["checks"]}
print(f'{sys.argv[2]:<6} {sys.argv[3] + "%":<8} {r["rtoSeconds"]:8.2f} {checks["digest"]:8.2f} {checks["fsck"]:8.2f}')
PY
  cleanup
done
