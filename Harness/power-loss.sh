#!/usr/bin/env bash
# Power-loss crash states (issue 10; Docs/durability.md). Usage: bash Harness/power-loss.sh [STATES]
#
# dm-log-writes with the project's own capture: a recorder site protects a disk that holds,
# through a loop device, the ext4 filesystem of a second site (its journal, primaries and its
# vault). The recorder's journal is then the ordered list of that filesystem's block writes,
# with a flush record at every flush. While it records, the inner site is protected (two disks,
# 1 MiB segments, seals, points and checkpoints every second or two, shipping) and four
# writers write to it with fdatasyncs; after each fdatasync returns, a writer acknowledges what
# it made durable on a second recorder disk, so the recorder's LSN order says which writes
# every crash state must hold. `lifeboat-powerloss check` then rebuilds STATES crash states
# (every flush boundary, then random subsets of the unflushed writes inside flush intervals)
# and checks each: ext4 mounts, the site recovers, journal verify is identical, every
# acknowledged write reads back, the vault verifies. Prints "N crash states, 0 lost"; exit 1
# on any loss. Root; env: SECONDS_OF_LOAD (default 8), SEED (1), KEEP_FAILURES=DIR, FAIL_FAST=1
# (stop at the first loss), POWER_LOSS_JOBS (checkers in parallel, default: the cores),
# KEEP_RECORDING=1 (keep the work directory: the recorder site, to rerun the checker),
# RECORD_ONLY=1 (stop after recording), SPARE_FILL=adaptive|zeros|reserved (how the inner site's
# journal prepares its spare segments: `.ci/run` proves the default and `reserved`).
set -euo pipefail
cd "$(dirname "$0")/.."
source Harness/setup.sh
states=${1:-300}
load_seconds=${SECONDS_OF_LOAD:-8}
seed=${SEED:-1}
# Release: the checker replays, hashes and compares every state (about 10x faster than debug).
swift build -c release --product lifeboat 2>&1 | tail -1
swift build -c release --product lifeboat-powerloss 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)
lifeboat=$bin/lifeboat powerloss=$bin/lifeboat-powerloss

work=$(mktemp -d /tmp/lifeboat-power-loss.XXXXXX)
images=$(mktemp -d /dev/shm/lifeboat-power-loss.XXXXXX)  # the states are built on XFS in memory: reflinks
rmnt=$work/recorder-mnt fs=$work/sitefs smnt=$work/site-mnt
loopdev="" recorder_pid="" site_pid="" pids=()
stop() {  # PID: SIGTERM, then wait for a clean stop
  kill -TERM "$1" 2>/dev/null && wait "$1"
}
cleanup() {
  set +e
  for pid in ${pids[@]+"${pids[@]}"}; do kill "$pid" 2>/dev/null && wait "$pid"; done
  [ -n "$site_pid" ] && stop "$site_pid"
  mountpoint -q "$smnt" && umount -l "$smnt"
  mountpoint -q "$fs" && umount "$fs"
  [ -n "$loopdev" ] && losetup -d "$loopdev"
  [ -n "$recorder_pid" ] && stop "$recorder_pid"
  mountpoint -q "$rmnt" && umount -l "$rmnt"
  mountpoint -q "$images/xfs" && umount "$images/xfs"
  if [ -n "${KEEP_RECORDING:-}" ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
  rm -rf "$images"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$rmnt" "$fs" "$smnt"
wait_mounted() { for _ in $(seq 100); do mountpoint -q "$1" && return 0; sleep 0.1; done; cat "$2" >&2; return 1; }

echo "== recorder: a protected disk for the site filesystem, one for acknowledgements"
$lifeboat init --site "$work/recorder"
$lifeboat disk create sitefs --size 512M --site "$work/recorder" >/dev/null
$lifeboat disk create acks --size 64M --site "$work/recorder" >/dev/null
$lifeboat protect "$rmnt" --site "$work/recorder" --segment-size 256M 2>"$work/recorder.log" & recorder_pid=$!
wait_mounted "$rmnt" "$work/recorder.log"
loopdev=$(losetup -f --show "$rmnt/sitefs.img")
mkfs.ext4 -q -F "$loopdev"
mount "$loopdev" "$fs"

echo "== the site on it: two disks, its vault beside it, protected under a load with fdatasyncs"
$lifeboat init --site "$fs/site" --vault "$fs/vault" >/dev/null
$lifeboat disk create d1 --size 4M --site "$fs/site" >/dev/null
$lifeboat disk create d2 --size 4M --site "$fs/site" >/dev/null
$lifeboat protect "$smnt" --site "$fs/site" --segment-size 1M --seal-interval 0.5 --point-interval 1 --checkpoint-interval 0.3 \
  --spare-fill "${SPARE_FILL:-adaptive}" 2>"$work/site.log" & site_pid=$!
wait_mounted "$smnt" "$work/site.log"
sync -f "$fs"
$powerloss workload --disk "$smnt/d1.img" --disk "$smnt/d2.img" --acks "$rmnt/acks.img" --writers 4 --sync-every 6 --seconds "$load_seconds" --seed "$seed" \
  || { tail -20 "$work/site.log" >&2; exit 1; }
stop "$site_pid"; site_pid=""
echo "site filesystem: $(du -sh "$fs/site/journal" | cut -f1) of journal, $(du -sh "$fs/vault" | cut -f1) of vault, $(df --output=pcent "$fs" | tail -1 | tr -d ' ') used"
umount "$fs"; losetup -d "$loopdev"; loopdev=""
stop "$recorder_pid"; recorder_pid=""

echo "== crash states"
[ -n "${RECORD_ONLY:-}" ] && exit 0
truncate -s 8G "$images/scratch.xfs"
mkfs.xfs -q -m reflink=1 "$images/scratch.xfs"
mkdir -p "$images/xfs"
mount -o loop "$images/scratch.xfs" "$images/xfs"
# One checker per core, each in its own mount namespace (every state mounts where the site was).
shards=${POWER_LOSS_JOBS:-$(nproc)}
for i in $(seq 0 $((shards - 1))); do
  mkdir -p "$images/xfs/$i"
  unshare -m --propagation private $powerloss check --recorder "$work/recorder" --disk d1 --disk d2 --states "$states" --seed "$seed" \
    --work "$images/xfs/$i" --mountpoint "$fs" --shard "$i/$shards" ${KEEP_FAILURES:+--keep-failures "$KEEP_FAILURES"} ${FAIL_FAST:+--fail-fast} >"$work/check.$i" &
  pids+=($!)
done
status=0
for _ in "${pids[@]}"; do  # each round reaps one checker, whichever ends first
  if ! wait -n; then
    status=1
    if [ -n "${FAIL_FAST:-}" ]; then break; fi
  fi
done
for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
pids=()
head -1 "$work/check.0"
[ "$status" -eq 0 ] || grep -hv "^recording:" "$work"/check.* >&2 || true
grep -h "^time per state\|^LOST" "$work"/check.* || true
checked=$(grep -h " crash states, .* lost" "$work"/check.* | awk '{n += $1; l += $4} END {print n " crash states, " l " lost"}')
echo "power-loss: $checked"
exit $status
