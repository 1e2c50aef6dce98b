#!/usr/bin/env bash
# Boot-drill RTO (issue 14): the drill of a sample-machine point with one `boot` check, RUNS
# times, and where the time goes.
#   bash Harness/bench/boot-drill.sh [RUNS]
# Prints per run: RTO (drill start to the probe's line), qemu start to the line, the drill's
# own part (namespaces, point view, cleanup), and the whole command; then one timestamped boot
# of the same disk outside the drill (qemu alone, same arguments) for the phases: firmware
# (SeaBIOS, until SYSLINUX prints), boot loader + kernel + initramfs (LIFEBOAT-BOOT), init + probe.
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
runs=${1:-5}
swift build -c release --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build -c release --show-bin-path)/lifeboat
work=$(mktemp -d /var/tmp/lifeboat-boot.XXXXXX)
pid=""
cleanup() { set +e; [ -n "$pid" ] && kill -TERM "$pid" && wait "$pid"; mountpoint -q "$work/mnt" && umount -l "$work/mnt"; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$work/mnt"
bash Images/recipes/sample-machine.sh "$work/machine.img"
"$lifeboat" init --site "$work/site" --vault "$work/vault" >/dev/null
"$lifeboat" disk create machine --from "$work/machine.img" --site "$work/site" >/dev/null
"$lifeboat" protect "$work/mnt" --site "$work/site" 2>"$work/protect.log" & pid=$!
for _ in $(seq 100); do mountpoint -q "$work/mnt" && break; sleep 0.1; done
"$lifeboat" checkpoint --site "$work/site" --label bench >/dev/null
kill -TERM "$pid"; wait "$pid"; pid=""
cat >"$work/plan.yaml" <<'PLAN'
disks:
  machine:
    filesystem: none
    checks:
      - boot: {expect: "LIFEBOAT-PROBE ok", fail-on: "FAILED", timeout: 2m}
PLAN

echo "| run | RTO | qemu start → probe line | drill's own part before the boot | cleanup after | whole command |"
echo "|---:|---:|---:|---:|---:|---:|"
for i in $(seq "$runs"); do
  start=$(date +%s.%N)
  "$lifeboat" drill "$work/plan.yaml" --vault "$work/vault" --report-json "$work/r.json" --work-dir "$work/drills" >/dev/null 2>&1
  end=$(date +%s.%N)
  python3 - "$work/r.json" "$start" "$end" "$i" <<'PY'
import json, sys
from datetime import datetime
r = json.load(open(sys.argv[1]))
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
c = r["disks"][0]["checks"][0]
rto, boot = r["rtoSeconds"], c["bootSeconds"]
cleanup = t(r["finishedAt"]) - t(r["startedAt"]) - rto
print(f"| {sys.argv[4]} | {rto:.2f} s | {boot:.2f} s | {rto - c['seconds']:.2f} s | {cleanup:.2f} s | {float(sys.argv[3]) - float(sys.argv[2]):.2f} s |")
PY
done

echo
echo "One boot of the same disk, qemu alone, console lines timestamped from qemu's start:"
python3 - "$work/machine.img" <<'PY'
import subprocess, sys, time
args = ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "256", "-smp", "1", "-nodefaults", "-no-user-config",
        "-display", "none", "-monitor", "none", "-serial", "stdio", "-nic", "none", "-no-reboot",
        "-drive", f"file={sys.argv[1]},format=raw,if=virtio,snapshot=on"]
start = time.monotonic()
p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
marks = {"SYSLINUX": "firmware done, boot loader running", "LIFEBOAT-BOOT": "kernel + initramfs: root mounted", "LIFEBOAT-PROBE": "init + probe"}
seen = {}
try:
    for raw in p.stdout:
        line = raw.decode(errors="replace")
        for key, what in marks.items():
            if key in line and key not in seen:
                seen[key] = time.monotonic() - start
                print(f"  {seen[key]:5.2f} s  {what}")
        if "LIFEBOAT-PROBE" in seen:
            break
finally:
    p.kill()
    p.wait()
PY
