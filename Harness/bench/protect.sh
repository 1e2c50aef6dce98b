#!/usr/bin/env bash
# Benchmark of `lifeboat protect` (issue 2): fio psync on a 1 GiB image, in one run, against
#   raw      the primary-like raw file on the same filesystem (no FUSE),
#   cfuse    a minimal C FUSE server exposing one image file (c_one_file.c), through the
#            kernel's page cache (keep_cache: the issue-2 baseline),
#   cdirect  the same server with --direct-io (FOPEN_DIRECT_IO, as protect opens its disks),
#   lifeboat `lifeboat protect` with journal and digest on.
# Each job runs ROUNDS times (default 3), the four targets one after the other in every round,
# so that a slow minute of this shared machine falls on all of them alike. Prints a Markdown table
# of the median per target, the ratios of the medians lifeboat/cfuse and lifeboat/cdirect, and
# the range of the per-round ratios lifeboat/cfuse. Needs root and /dev/fuse. JOBS (names,
# space-separated) runs only those jobs, e.g. more rounds of the two 4 KiB write jobs:
#   bash Harness/bench/protect.sh [SECONDS_PER_JOB] [ROUNDS]
#   JOBS="randwrite-4k randwrite-4k-fsync" bash Harness/bench/protect.sh 6 7
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
runtime=${1:-10}
rounds=${2:-3}
swift build -c release --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build -c release --show-bin-path)/lifeboat
work=$(mktemp -d /var/tmp/lifeboat-bench.XXXXXX)
gcc -O2 Harness/bench/c_one_file.c $(pkg-config --cflags --libs fuse3) -o "$work/c_one_file"

pids=()
cleanup() {
  set +e
  for m in "$work/cmnt" "$work/dmnt" "$work/lmnt"; do mountpoint -q "$m" && umount "$m"; done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$work/cmnt" "$work/dmnt" "$work/lmnt"

# Same starting content for all three: 1 GiB of written (not sparse) data.
dd if=/dev/urandom of="$work/raw.img" bs=1M count=1024 status=none
cp "$work/raw.img" "$work/cfuse.img"
cp "$work/raw.img" "$work/cdirect.img"
"$work/c_one_file" "$work/cfuse.img" "$work/cmnt" & pids+=($!)
"$work/c_one_file" "$work/cdirect.img" "$work/dmnt" --direct-io & pids+=($!)
# A fresh site for every job: with no vault, protect keeps its whole journal (it is what a
# vault added later ships), and six jobs of 1 MiB writes at disk speed would fill /var/tmp.
protect_pid=
fresh_protect() {
  if [ -n "$protect_pid" ]; then umount "$work/lmnt"; wait "$protect_pid" || true; fi
  rm -rf "$work/site"
  "$lifeboat" init --site "$work/site" >/dev/null
  "$lifeboat" disk create disk --from "$work/seed.img" --site "$work/site" >/dev/null
  "$lifeboat" protect "$work/lmnt" --site "$work/site" 2>>"$work/protect.log" & protect_pid=$!
  pids+=($protect_pid)
  for _ in $(seq 100); do mountpoint -q "$work/lmnt" && break; sleep 0.1; done
}
cp "$work/raw.img" "$work/seed.img"
for _ in $(seq 100); do mountpoint -q "$work/cmnt" && mountpoint -q "$work/dmnt" && break; sleep 0.1; done

declare -A target=([raw]="$work/raw.img" [cfuse]="$work/cmnt/disk.img" [cdirect]="$work/dmnt/disk.img" [lifeboat]="$work/lmnt/disk.img")
jobs=(
  "randwrite-4k|--rw=randwrite --bs=4k|iops"
  "seqwrite-1m|--rw=write --bs=1m|bw"
  "seqwrite-1m-aligned|--rw=write --bs=1m --iomem_align=4096|bw"
  "randwrite-4k-fsync|--rw=randwrite --bs=4k --fsync=1|iops"
  "randread-4k|--rw=randread --bs=4k|iops"
  "seqread-1m|--rw=read --bs=1m|bw"
)
if [ -n "${JOBS:-}" ]; then
  chosen=()
  for job in "${jobs[@]}"; do [[ " $JOBS " == *" ${job%%|*} "* ]] && chosen+=("$job"); done
  [ ${#chosen[@]} -gt 0 ] || { echo "JOBS names none of: ${jobs[*]%%|*}" >&2; exit 64; }
  jobs=("${chosen[@]}")
fi
declare -A result  # [job,target]: the rounds' figures, space-separated
for job in "${jobs[@]}"; do
  IFS='|' read -r name args metric <<<"$job"
  fresh_protect
  for round in $(seq "$rounds"); do
    for t in raw cfuse cdirect lifeboat; do
      sync; echo 3 >/proc/sys/vm/drop_caches
      out=$(fio --name="$name" --filename="${target[$t]}" $args --size=1G --ioengine=psync --iodepth=1 \
            --time_based --runtime="$runtime" --ramp_time=1 --output-format=json)
      result[$name,$t]+="$(python3 -c '
import json,sys
j=json.loads(sys.argv[1])["jobs"][0]; side=j["write"] if j["write"]["io_bytes"] else j["read"]
print(round(side["iops"]) if sys.argv[2]=="iops" else round(side["bw_bytes"]/1e6,1))' "$out" "$metric") "
    done
  done
done

echo
echo "| job (fio psync, QD1, 1 GiB, ${runtime}s, median of $rounds) | unit | raw file | C FUSE | C FUSE direct-io | lifeboat | lifeboat / C FUSE | per round | lifeboat / C direct-io |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for job in "${jobs[@]}"; do
  IFS='|' read -r name args metric <<<"$job"
  unit=$([ "$metric" = iops ] && echo IOPS || echo MB/s)
  python3 - "$name" "$unit" "${result[$name,raw]}" "${result[$name,cfuse]}" "${result[$name,cdirect]}" "${result[$name,lifeboat]}" <<'PY'
import statistics, sys
name, unit, *rows = sys.argv[1:]
raw, cfuse, cdirect, lb = ([float(x) for x in r.split()] for r in rows)
med = statistics.median
rounds = [l / c for l, c in zip(lb, cfuse)]
fmt = lambda v: f"{v:.0f}" if unit == "IOPS" else f"{v:.1f}"
print(f"| {name} | {unit} | {fmt(med(raw))} | {fmt(med(cfuse))} | {fmt(med(cdirect))} | {fmt(med(lb))} | "
      f"{med(lb) / med(cfuse):.0%} | {min(rounds):.0%}–{max(rounds):.0%} | {med(lb) / med(cdirect):.0%} |")
PY
done
"$lifeboat" status --site "$work/site" | sed -n 2p
