#!/usr/bin/env bash
# RPO benchmark (issue 3): protect with a vault under a sustained fsync'd write load.
#   bash Harness/bench/rpo.sh [SECONDS] [RATE_MB_S] [POINT_INTERVAL_S]
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
seconds=${1:-30} rate=${2:-50} interval=${3:-}
swift build -c release --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build -c release --show-bin-path)/lifeboat
work=$(mktemp -d /var/tmp/lifeboat-rpo.XXXXXX)
pid=""
cleanup() { set +e; [ -n "$pid" ] && kill -TERM "$pid" && wait "$pid"; mountpoint -q "$work/mnt" && umount -l "$work/mnt"; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$work/mnt"
"$lifeboat" init --site "$work/site" --vault "$work/vault" >/dev/null
"$lifeboat" disk create disk --size 4G --site "$work/site" >/dev/null
"$lifeboat" protect "$work/mnt" --site "$work/site" ${interval:+--point-interval "$interval"} 2>"$work/protect.log" & pid=$!
for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
echo "point interval ${interval:-default}${interval:+s}, ${rate} MB/s for ${seconds}s:"
python3 Harness/bench/rpo.py "$lifeboat" "$work/mnt/disk.img" "$work/vault" "$seconds" "$rate"
