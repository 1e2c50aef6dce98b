#!/usr/bin/env bash
# A/B of two `lifeboat` binaries on one fio job through `protect`, alternated in one sitting:
# PAIRS times (default 3) a fresh site per binary, three runs of SECONDS (default 6) each, page
# cache dropped before every run. Prints each run's IOPS, MB/s, protect's CPU per write (all
# its threads, from /proc) and the writes' completion latency at p99 and p99.99 (µs), then the
# medians. Used for the trials in Docs/benchmarks.md.
#   bash Harness/bench/protect-ab.sh BIN_A BIN_B "FIO ARGS" [PAIRS] [SECONDS] [-- PROTECT ARGS]
# e.g. bash Harness/bench/protect-ab.sh /tmp/old/lifeboat .build/release/lifeboat "--rw=randwrite --bs=4k"
set -euo pipefail
a=$1 b=$2 fargs=$3
shift 3
pairs=3 runtime=6
if [ $# -gt 0 ] && [ "$1" != "--" ]; then pairs=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" != "--" ]; then runtime=$1; shift; fi
if [ $# -gt 0 ] && [ "$1" = "--" ]; then shift; fi
work=$(mktemp -d /var/tmp/lifeboat-ab.XXXXXX)
pid=
cleanup() {
  set +e
  mountpoint -q "$work/m" && umount "$work/m"
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$work/m"
dd if=/dev/urandom of="$work/seed.img" bs=1M count=1024 status=none

# one_binary BIN LABEL: a fresh site on a copy of the seed image, three runs.
one_binary() {
  local lb=$1 label=$2
  shift 2
  rm -rf "$work/site"
  "$lb" init --site "$work/site" >/dev/null
  "$lb" disk create disk --from "$work/seed.img" --site "$work/site" >/dev/null
  "$lb" protect "$work/m" --site "$work/site" "$@" 2>"$work/protect.log" & pid=$!
  for _ in $(seq 100); do mountpoint -q "$work/m" && break; sleep 0.1; done
  for _ in 1 2 3; do
    sync; echo 3 >/proc/sys/vm/drop_caches
    local c0 c1 out
    c0=$(awk '{print $14+$15}' "/proc/$pid/stat")
    out=$(fio --name=ab --filename="$work/m/disk.img" $fargs --size=1G --ioengine=psync --iodepth=1 \
          --time_based --runtime="$runtime" --output-format=json --percentile_list=99:99.99)
    c1=$(awk '{print $14+$15}' "/proc/$pid/stat")
    python3 -c '
import json, os, sys
j = json.loads(sys.argv[1])["jobs"][0]["write"]
ticks = os.sysconf("SC_CLK_TCK")
p = list(j["clat_ns"]["percentile"].values())
print(sys.argv[4], round(j["iops"]), round(j["bw_bytes"] / 1e6), round((int(sys.argv[3]) - int(sys.argv[2])) / ticks * 1e6 / j["total_ios"], 1),
      round(p[0] / 1000), round(p[1] / 1000))' \
      "$out" "$c0" "$c1" "$label" | tee -a "$work/results"
  done
  umount "$work/m"; wait "$pid"; pid=
}

echo "binary IOPS MB/s protect-CPU-µs/write p99-µs p99.99-µs"
for _ in $(seq "$pairs"); do
  one_binary "$a" A "${@}"
  one_binary "$b" B "${@}"
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for label in "AB":
    mine = [r for r in rows if r[0] == label]
    med = lambda i: statistics.median(float(r[i]) for r in mine)
    print(f"median {label}: {med(1):.0f} IOPS, {med(2):.0f} MB/s, {med(3):.1f} µs CPU per write, p99 {med(4):.0f} µs, p99.99 {med(5):.0f} µs")
PY
