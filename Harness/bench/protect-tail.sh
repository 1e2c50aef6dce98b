#!/usr/bin/env bash
# The completion-latency tail of `protect` against the C FUSE server (c_one_file.c), alternated
# in one sitting: ROUNDS times, the C server once, then every VARIANT on a fresh site. A VARIANT
# is "BINARY|PROTECT ARGS|PREPARER", PREPARER optional: a nice value, `idle` (SCHED_IDLE) or
# `sUS` (an EEVDF slice of US µs, `sched_setattr`) for the segment preparer's thread — the
# trials of Docs/benchmarks.md. Prints IOPS, the completion latency's p50, p99, p99.9, p99.99
# and maximum (µs) per run. Needs root and /dev/fuse.
#   bash Harness/bench/protect-tail.sh ROUNDS SECONDS "FIO ARGS" VARIANT...
# e.g. bash Harness/bench/protect-tail.sh 3 8 "--rw=randwrite --bs=4k" "/tmp/old/lifeboat|" ".build/release/lifeboat|"
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=$1 runtime=$2 fargs=$3
shift 3
work=$(mktemp -d /var/tmp/lifeboat-tail.XXXXXX)
pid= cpid=
cleanup() {
  set +e
  for m in "$work/m" "$work/c"; do mountpoint -q "$m" && umount "$m"; done
  [ -n "$pid" ] && kill "$pid" 2>/dev/null
  [ -n "$cpid" ] && kill "$cpid" 2>/dev/null
  wait
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM
mkdir -p "$work/m" "$work/c"
dd if=/dev/urandom of="$work/seed.img" bs=1M count=1024 status=none
cp "$work/seed.img" "$work/c.img"
gcc -O2 Harness/bench/c_one_file.c $(pkg-config --cflags --libs fuse3) -o "$work/cserver"
"$work/cserver" "$work/c.img" "$work/c" & cpid=$!

run_fio() {
  sync; echo 3 >/proc/sys/vm/drop_caches
  fio --name=tail --filename="$1" $fargs --size=1G --ioengine=psync --iodepth=1 --time_based --runtime="$runtime" \
      --output-format=json --percentile_list=50:99:99.9:99.99 | python3 -c '
import json, sys
j = json.load(sys.stdin)["jobs"][0]["write"]; c = j["clat_ns"]
print(round(j["iops"]), *(round(v / 1000) for v in c["percentile"].values()), round(c["max"] / 1000))'
}

# set_preparer PID HOW: the scheduling of protect's segment-preparer thread.
set_preparer() {
  local t
  for t in /proc/$1/task/*; do
    [[ $(cat "$t/comm") == lifeboat-segme* ]] || continue
    case $2 in
      idle) chrt -i -p 0 "${t##*/}" ;;
      s*) python3 - "${t##*/}" "${2#s}" <<'PY'
import ctypes, struct, sys
# struct sched_attr: size, policy, flags, nice, priority, runtime (the EEVDF slice), deadline, period
attr = struct.pack("IIQiIQQQII", 56, 0, 0, 0, 0, int(float(sys.argv[2]) * 1000), 0, 0, 0, 0)
if ctypes.CDLL(None, use_errno=True).syscall(314, int(sys.argv[1]), ctypes.create_string_buffer(attr), 0) != 0:
    sys.exit("sched_setattr failed")
PY
      ;;
      *) renice -n "$2" -p "${t##*/}" >/dev/null ;;
    esac
  done
}

for _ in $(seq 100); do mountpoint -q "$work/c" && break; sleep 0.1; done
echo "run IOPS p50 p99 p99.9 p99.99 max (µs)"
for _ in $(seq "$rounds"); do
  echo "C $(run_fio "$work/c/disk.img")"
  i=0
  for variant in "$@"; do
    i=$((i + 1))
    IFS='|' read -r bin args preparer <<<"$variant"
    rm -rf "$work/site"
    "$bin" init --site "$work/site" >/dev/null
    "$bin" disk create disk --from "$work/seed.img" --site "$work/site" >/dev/null
    "$bin" protect "$work/m" --site "$work/site" $args 2>"$work/protect.log" & pid=$!
    for _ in $(seq 100); do mountpoint -q "$work/m" && break; sleep 0.1; done
    [ -n "$preparer" ] && set_preparer "$pid" "$preparer"
    echo "v$i $(run_fio "$work/m/disk.img")"
    umount "$work/m"; wait "$pid"; pid=
  done
done
