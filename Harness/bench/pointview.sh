#!/usr/bin/env bash
# Recovery-point views and VHD export (issue 4), in one run:
#   open     point open time, 1 GiB vs 64 GiB sparse disk (lifeboat-bench open)
#   export   lifeboat export --format vhd-fixed / vhd-dynamic vs qemu-img convert -O vpc from a raw
#            file of the same content. lifeboat's export is durable when it returns (fsync), so the
#            fair baseline is qemu-img with -t writeback (flushes at the end); qemu-img's default
#            target cache mode, unsafe, skips that flush and is shown too.
#   reads    fio on a mounted point (lifeboat mount) vs the C FUSE server serving the same bytes:
#            1 MiB sequential read, 4 KiB random read p99 (warm)
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
swift build -c release 2>&1 | tail -1
bin=$(swift build -c release --show-bin-path)
lifeboat=$bin/lifeboat
"$bin/lifeboat-bench" open
work=$(mktemp -d /var/tmp/lifeboat-pv.XXXXXX)
pids=()
cleanup() {
  set +e
  for m in "$work/m" "$work/view" "$work/c"; do mountpoint -q "$m" && umount "$m"; done
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$work/m" "$work/view" "$work/c"
export LIFEBOAT_SITE=$work/site LIFEBOAT_VAULT=$work/vault
"$lifeboat" init >/dev/null
"$lifeboat" disk create d0 --size 1G >/dev/null
"$lifeboat" protect "$work/m" 2>/dev/null & protect=$!
for _ in $(seq 100); do mountpoint -q "$work/m" && break; sleep 0.1; done
# 512 MiB of half-compressible data over the first half, some scattered 4 KiB writes elsewhere.
python3 - "$work/m/d0.img" <<'PY'
import os, random, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
random.seed(1)
for i in range(512):
    os.pwrite(fd, os.urandom(1 << 19) + bytes(1 << 19), i << 20)
for i in range(2000):
    os.pwrite(fd, os.urandom(4096), random.randrange(1 << 17, 1 << 18) << 12)
os.fsync(fd); os.close(fd)
PY
"$lifeboat" checkpoint --label bench >/dev/null
kill -TERM $protect; wait $protect
"$lifeboat" export --point latest --disk d0 "$work/d0.raw" >/dev/null
sync; echo 3 > /proc/sys/vm/drop_caches

t() { local s=$(date +%s.%N); "$@" >/dev/null; python3 -c "print(f'{$(date +%s.%N)-$s:.2f}')"; }
cold() { sync; echo 3 > /proc/sys/vm/drop_caches; }
for sub in fixed dynamic; do
  cold; ours=$(t "$lifeboat" export --point latest --disk d0 --format vhd-$sub "$work/ours-$sub.vhd")
  cold; qemu=$(t qemu-img convert -t writeback -f raw -O vpc -o subformat=$sub,force_size=on "$work/d0.raw" "$work/qemu-$sub.vhd")
  rm -f "$work/qemu-$sub.vhd"
  cold; unsafe=$(t qemu-img convert -f raw -O vpc -o subformat=$sub,force_size=on "$work/d0.raw" "$work/qemu-$sub.vhd")
  python3 -c "print(f'export vhd-$sub, 1 GiB, cold: lifeboat {$ours} s; qemu-img convert -t writeback {$qemu} s (lifeboat at {$qemu/$ours:.0%} of its throughput); qemu-img default (unsafe, no flush) {$unsafe} s ({$unsafe/$ours:.0%})')"
  rm -f "$work/ours-$sub.vhd" "$work/qemu-$sub.vhd"
done

gcc -O2 Harness/bench/c_one_file.c $(pkg-config --cflags --libs fuse3) -o "$work/c_one_file"
"$work/c_one_file" "$work/d0.raw" "$work/c" & pids+=($!)
"$lifeboat" mount "$work/view" --point latest 2>/dev/null & pids+=($!)
for _ in $(seq 100); do mountpoint -q "$work/c" && mountpoint -q "$work/view" && break; sleep 0.1; done
fio_json() { fio --name=x --filename="$1" $2 --size=1G --ioengine=psync --time_based --runtime=8 --ramp_time=2 --output-format=json; }
for job in "seqread-1m|--rw=read --bs=1m" "randread-4k|--rw=randread --bs=4k"; do
  IFS='|' read -r name args <<<"$job"
  c=$(fio_json "$work/c/disk.img" "$args")
  l=$(fio_json "$work/view/d0.img" "$args")
  python3 - "$name" "$c" "$l" <<'PY'
import json, sys
name, c, l = sys.argv[1], json.loads(sys.argv[2])["jobs"][0]["read"], json.loads(sys.argv[3])["jobs"][0]["read"]
p99 = lambda r: r["clat_ns"]["percentile"]["99.000000"] / 1e6
print(f"{name}: C FUSE {c['bw_bytes']/1e6:.0f} MB/s {c['iops']:.0f} IOPS p99 {p99(c):.3f} ms; "
      f"lifeboat mount {l['bw_bytes']/1e6:.0f} MB/s {l['iops']:.0f} IOPS p99 {p99(l):.3f} ms; ratio {l['bw_bytes']/c['bw_bytes']:.0%}")
PY
done
