#!/usr/bin/env bash
# The Lifeboat demo on a fresh Debian 12 machine (as root): installs what it needs, builds
# in release mode, creates a site in a temporary directory, protects a disk, puts ext4 on it
# through a loop device, writes files, takes an app-consistent recovery point, exports it,
# drills it (isolated target: digest, fsck, a script), shows what a prune would drop, that an
# app-consistent checkpoint with nothing to quiesce says so (exit 3), that other users read
# nothing, runs a virtual machine on a protected disk (app-consistent through its guest agent)
# and drills its point by booting it, serves a vault over mutual TLS to a second site, fails that
# site over to the vault's host (planned: zero loss), re-protects it and fails back moving only
# what changed, proves the journal and the vault, and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."
source Harness/setup.sh
echo "== building (release)"
swift build -c release --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build -c release --show-bin-path)/lifeboat

work=$(mktemp -d /tmp/lifeboat-demo.XXXXXX)
site=$work/site vault=$work/vault mnt=$work/mnt fs=$work/fs loopdev="" protect_pid="" qemu_pid="" serve_pid="" branch_pid="" recovered_pid=""
cleanup() {
  set +e
  if [ -n "$branch_pid" ] && kill -0 "$branch_pid" 2>/dev/null; then kill -TERM "$branch_pid"; wait "$branch_pid"; fi
  if [ -n "$recovered_pid" ] && kill -0 "$recovered_pid" 2>/dev/null; then kill -TERM "$recovered_pid"; wait "$recovered_pid"; fi
  mountpoint -q "$work/bmnt" && umount -l "$work/bmnt"
  mountpoint -q "$work/rmnt" && umount -l "$work/rmnt"
  [ -n "$serve_pid" ] && kill -TERM "$serve_pid" 2>/dev/null && wait "$serve_pid"
  [ -n "$qemu_pid" ] && kill -KILL "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
  mountpoint -q "$fs" && umount "$fs"
  [ -n "$loopdev" ] && losetup -d "$loopdev" 2>/dev/null
  if [ -n "$protect_pid" ] && kill -0 "$protect_pid" 2>/dev/null; then
    kill -TERM "$protect_pid"; wait "$protect_pid"
  fi
  mountpoint -q "$mnt" && umount -l "$mnt"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$mnt" "$fs"
export LIFEBOAT_SITE=$site LIFEBOAT_VAULT=$vault LIFEBOAT_DRILL_DIR=$work/drills

step() { echo; echo "== $*"; }
step "lifeboat init (a site and its vault)";  $lifeboat init
step "lifeboat disk create vm0 --size 1G";    $lifeboat disk create vm0 --size 1G
step "lifeboat protect $mnt (in the background)"
$lifeboat protect "$mnt" & protect_pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || { echo "protect did not mount" >&2; exit 1; }
ls -l "$mnt"

step "ext4 on $mnt/vm0.img through a loop device, then a file tree"
mkfs.ext4 -q -F "$mnt/vm0.img"
loopdev=$(losetup -f --show "$mnt/vm0.img")
mount "$loopdev" "$fs"
cp -r /usr/share/doc/e2fsprogs /usr/share/doc/fuse3 "$fs"/
dd if=/dev/urandom of="$fs/random.bin" bs=1M count=32 status=none
sync
du -sh "$fs"

step "lifeboat checkpoint --app-consistent (fsfreeze, marker, thaw; copy of the primary while frozen)"
$lifeboat checkpoint --app-consistent --label demo --while-frozen "cp --sparse=always $site/disks/vm0.img $work/frozen.img"
step "more writes after the point";           dd if=/dev/urandom of="$fs/after.bin" bs=1M count=8 status=none; sync
step "lifeboat status";                       sleep 1.2; $lifeboat status
step "lifeboat points --disk vm0";            $lifeboat points --disk vm0
step "lifeboat export --point latest-app --disk vm0"
$lifeboat export --point latest-app --disk vm0 --format raw "$work/vm0-app.raw"
cmp "$work/vm0-app.raw" "$work/frozen.img" && echo "the export equals the disk as it was while frozen"
e2fsck -fn "$work/vm0-app.raw" >/dev/null && echo "e2fsck: the app-consistent image is clean"
step "lifeboat drill: test failover of the app-consistent point (isolated, throwaway, checked)"
cat > "$work/plan.yaml" <<'PLAN'
point: latest-app
disks:
  vm0:
    checks:
      - digest                       # block-exact against the source digest at the marker
      - fsck                         # e2fsck -fn after the journal replay
      - script: {name: files-present, run: 'test -d "$LIFEBOAT_TARGET/e2fsprogs" && test -s "$LIFEBOAT_TARGET/random.bin"'}
PLAN
cat "$work/plan.yaml"
$lifeboat drill "$work/plan.yaml" --junit "$work/drill.xml" --report-json "$work/drill.json"
step "lifeboat points (the drill is kept with its point)"; $lifeboat points
step "lifeboat vault prune --dry-run (what a 1-minute window would drop; nothing changes)"
$lifeboat vault prune --dry-run --window 1m --keep-all 30s --every 30s
step "unmount ext4, detach the loop device";  umount "$fs"; losetup -d "$loopdev"; loopdev=""
step "lifeboat checkpoint --app-consistent with nothing to quiesce: a crash-consistent point, said so, exit 3"
$lifeboat checkpoint --app-consistent --label nothing-mounted && echo "unexpected: claimed app-consistent" || echo "(exit $?)"
step "an unprivileged user: the site and vault are private (exit 77, nothing read)"
setpriv --reuid=65534 --regid=65534 --clear-groups "$lifeboat" status && echo "unexpected: readable" || echo "(exit $?)"
setpriv --reuid=65534 --regid=65534 --clear-groups head -c 16 "$site/disks/vm0.img" 2>&1 || true
step "a virtual machine on a protected disk: the sample machine (Images/recipes/sample-machine.sh) under its own write load"
bash Images/recipes/sample-machine.sh "$work/machine.img"
kill -TERM "$protect_pid"; wait "$protect_pid" || true   # disks are added while protect is stopped
$lifeboat disk create machine --from "$work/machine.img"
step "lifeboat protect again, now with the machine's disk; qemu boots from $mnt/machine.img"
$lifeboat protect "$mnt" & protect_pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
# TCG runs everywhere (the boot check itself uses KVM where /dev/kvm really runs guests).
qemu-system-x86_64 -machine q35 -accel tcg -m 256 -nodefaults -no-user-config -display none -monitor none -nic none \
  -serial "file:$work/console.log" -drive "file=$mnt/machine.img,format=raw,if=virtio" \
  -device virtio-serial -chardev "socket,path=$work/qga.sock,server=on,wait=off,id=qga0" \
  -device virtserialport,chardev=qga0,name=org.qemu.guest_agent.0 & qemu_pid=$!
for _ in $(seq 300); do grep -q "LIFEBOAT-WORKLOAD 256" "$work/console.log" 2>/dev/null && break; sleep 0.1; done
grep -a LIFEBOAT "$work/console.log" | head -4
step "lifeboat checkpoint --app-consistent --guest-agent (the guest freezes its own filesystem)"
$lifeboat checkpoint --app-consistent --guest-agent "$work/qga.sock" --label vm
step "a power cut of the machine: kill -9 of qemu in the middle of its writes"
sleep 2; kill -KILL "$qemu_pid"; wait "$qemu_pid" 2>/dev/null || true; qemu_pid=""
$lifeboat checkpoint --label after-power-cut
step "lifeboat drill: boot each point in an isolated qemu (no network, throwaway snapshot) until the guest's probe passes"
cat > "$work/boot.yaml" <<'PLAN'
disks:
  machine:
    filesystem: none
    checks:
      - boot: {expect: "LIFEBOAT-PROBE ok", fail-on: "FAILED", timeout: 2m}
PLAN
cat "$work/boot.yaml"
$lifeboat drill "$work/boot.yaml" --point latest-app
$lifeboat drill "$work/boot.yaml" --point latest
step "the vault on another machine: lifeboat vault serve (here on 127.0.0.1), mutual TLS 1.3 with the vault's own CA, data encrypted at rest with a key kept outside the vault"
$lifeboat vault keygen "$work/vault.key"
$lifeboat vault enroll --vault "$work/remote-vault" --site-name branch > "$work/branch.bundle"
ls -l "$work/branch.bundle" "$work/vault.key"
$lifeboat vault serve --vault "$work/remote-vault" --key "$work/vault.key" --listen 127.0.0.1:0 > "$work/serve.out" 2> "$work/serve.log" & serve_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
address=lifeboat://$(sed -n 's/^listening on //p' "$work/serve.out")
step "a second site, branch, ships to it: init --vault $address --bundle branch.bundle"
$lifeboat init --site "$work/branch" --vault "$address" --bundle "$work/branch.bundle"
$lifeboat disk create b0 --size 64M --site "$work/branch"
mkdir -p "$work/bmnt"
$lifeboat protect "$work/bmnt" --site "$work/branch" --bandwidth 50MB/s --spool-limit 16M --segment-size 4M --checkpoint-interval 1s 2>"$work/branch.log" & branch_pid=$!
for _ in $(seq 100); do mountpoint -q "$work/bmnt" && break; sleep 0.1; done
dd if=/dev/urandom of="$work/bmnt/b0.img" bs=1M count=8 conv=fsync status=none
$lifeboat checkpoint --site "$work/branch" --label over-the-network
step "records stream to the vault as they become durable (every 100 ms): status shows the RPO now and the rate"
sleep 1.5
$lifeboat status --site "$work/branch" | grep -E "^vault|RPO now|bandwidth"
step "from the site's host, over the network: lifeboat points --site branch (its own group, and only its own)"
$lifeboat points --site "$work/branch"
step "the vault goes away (vault serve stopped): the branch's writes go on; past --spool-limit 16M it drops journal the vault lacks and keeps which 1 MiB regions it wrote"
kill -TERM "$serve_pid"; wait "$serve_pid" || true; serve_pid=""
listen=$(sed -n 's/^listening on //p' "$work/serve.out")
for i in 1 2 3; do dd if=/dev/urandom of="$work/bmnt/b0.img" bs=1M count=16 seek=$((i * 8)) conv=fsync,notrunc status=none; done
for _ in $(seq 60); do $lifeboat status --site "$work/branch" | grep -q "points paused" && break; sleep 0.5; done
$lifeboat status --site "$work/branch" | grep -E "^journal|paused|spool|resync"
$lifeboat checkpoint --site "$work/branch" || echo "(exit $?: no point while the vault lacks writes)"
step "the vault is back: it is told of the gap, only the dirty regions are read from the primary and sent, then points resume"
$lifeboat vault serve --vault "$work/remote-vault" --key "$work/vault.key" --listen "$listen" > "$work/serve.out" 2>> "$work/serve.log" & serve_pid=$!
for _ in $(seq 120); do $lifeboat status --site "$work/branch" | grep -q "points paused" || break; sleep 0.5; done
grep -o "resync done.*" "$work/branch.log"
$lifeboat checkpoint --site "$work/branch" --label after-the-outage
$lifeboat points --site "$work/branch"
step "on the vault's host: lifeboat points --vault remote-vault --site branch (one group per site); reading data takes the key"
ls "$work/remote-vault/sites"
$lifeboat points --vault "$work/remote-vault" --site branch
$lifeboat vault verify --vault "$work/remote-vault" --site branch || echo "(exit $?: without its key the vault's data reads as nothing)"
$lifeboat vault verify --vault "$work/remote-vault" --site branch --key "$work/vault.key"
step "a planned failover of branch to the vault's host: branch stops serving writes, marks a final point and drains; the failover is at exactly that point (zero loss)"
$lifeboat failover --planned --vault "$work/remote-vault" --site branch --key "$work/vault.key" --to "$work/recovered" --yes
for _ in $(seq 40); do $lifeboat status --site "$work/branch" | grep -q FENCED && break; sleep 0.25; done
$lifeboat status --site "$work/branch" | grep FENCED
dd if=/dev/zero of="$work/bmnt/b0.img" bs=4k count=1 conv=notrunc,fsync status=none 2>&1 || echo "(the old host's writes are refused: it is fenced)"
step "the failed-over site serves the point at once (nothing copied first), journaled and shipped into the same vault as generation 2"
mkdir -p "$work/rmnt"
$lifeboat protect "$work/rmnt" --site "$work/recovered" 2>"$work/recovered.log" & recovered_pid=$!
for _ in $(seq 100); do mountpoint -q "$work/rmnt" && break; sleep 0.1; done
cmp "$work/rmnt/b0.img" "$work/branch/disks/b0.img" && echo "the failed-over disk equals branch's at its final point"
dd if=/dev/urandom of="$work/rmnt/b0.img" bs=1M count=2 seek=40 conv=notrunc,fsync status=none
until $lifeboat checkpoint --site "$work/recovered" --label on-the-vault-host 2>/dev/null; do sleep 0.5; done
step "re-protect branch's host: it becomes a replica, moving only the blocks written since (2 MiB), no scan"
kill -TERM "$branch_pid"; wait "$branch_pid" || true; branch_pid=""
$lifeboat reprotect --site "$work/branch"
step "fail back to branch: the failed-over site drains, branch catches up to its final point and owns the group again"
dd if=/dev/urandom of="$work/rmnt/b0.img" bs=1M count=1 seek=50 conv=notrunc,fsync status=none
$lifeboat failback --site "$work/branch" --yes
cmp "$work/rmnt/b0.img" "$work/branch/disks/b0.img" && echo "zero loss: branch's disk equals the failed-over site's at its final point"
kill -TERM "$recovered_pid"; wait "$recovered_pid" || true; recovered_pid=""
$lifeboat protect "$work/bmnt" --site "$work/branch" 2>>"$work/branch.log" & branch_pid=$!
for _ in $(seq 100); do mountpoint -q "$work/bmnt" && break; sleep 0.1; done
$lifeboat checkpoint --site "$work/branch" --label home-again
$lifeboat points --site "$work/branch" | tail -4
step "what the vault service logged"
kill -TERM "$branch_pid"; wait "$branch_pid" || true; branch_pid=""
kill -TERM "$serve_pid"; wait "$serve_pid" || true; serve_pid=""
cat "$work/serve.log"
step "a crash: kill -9 of protect (its FUSE mount is left dead)"
kill -KILL "$protect_pid"; wait "$protect_pid" 2>/dev/null || true; protect_pid=""
umount -l "$mnt"
$lifeboat status | head -2
step "lifeboat journal recover (replay the journal, re-journal the activity log's regions; nothing is served)"
$lifeboat journal recover
step "lifeboat journal verify";               $lifeboat journal verify
step "lifeboat vault verify";                 $lifeboat vault verify
step "lifeboat status";                       $lifeboat status
echo
echo "demo complete; cleaning up $work"
