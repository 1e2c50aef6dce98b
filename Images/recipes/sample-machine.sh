#!/usr/bin/env bash
# Builds the sample machine (issue 14): a raw disk image that boots by itself in qemu and runs
# one application, from Debian packages only.
#
#   sample-machine.sh OUT.img [SIZE_MIB]     (default 128; as root: extlinux needs a mount)
#
# The disk is one ext4 filesystem over the whole disk with extlinux in its boot sector (no
# partition table): the BIOS loads extlinux, which loads Debian's cloud kernel and a small
# initramfs. The initramfs loads the virtio modules (the cloud kernel has ext4 built in but not
# virtio), mounts /dev/vda read-write (ext4 replays its journal here if the disk was cut off
# mid-write) and switches to the root, whose /sbin/init is a busybox shell script:
#
#   LIFEBOAT-BOOT journal=clean|replayed   whether the root needed a journal replay
#   LIFEBOAT-PROBE ok records=N ...        the application's invariant (lifeboat-guest probe)
#   LIFEBOAT-WORKLOAD ...                  then the write load, fdatasync per 4 KiB record
#
# and, on a virtio-serial port named org.qemu.guest_agent.0 if the machine has one, a guest
# agent answering the qemu guest agent's protocol for freeze and thaw (`lifeboat guest-agent`).
#
# all on the serial console (ttyS0). A failed probe powers the machine off. The ledger and its
# invariant: Images/recipes/guest/lifeboat-guest.c.
#
# The downloaded packages and the built image are cached in $LIFEBOAT_IMAGE_CACHE
# (default /var/cache/lifeboat-images), keyed by the packages' versions and this recipe's
# files: a second call copies the cached image.
set -euo pipefail
out=${1:?usage: sample-machine.sh OUT.img [SIZE_MIB]}
size=${2:-128}
here=$(cd "$(dirname "$0")" && pwd)
cache=${LIFEBOAT_IMAGE_CACHE:-/var/cache/lifeboat-images}
[ "$(id -u)" -eq 0 ] || { echo "sample-machine: run as root (extlinux installs into a mounted filesystem)" >&2; exit 77; }
for tool in extlinux mkfs.ext4 cpio gcc; do
  command -v "$tool" >/dev/null || { echo "sample-machine: $tool is missing (Harness/setup.sh installs it)" >&2; exit 69; }
done
mkdir -p "$cache/debs"

kernel_pkg=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-/ {print $2; exit}')
[ -n "$kernel_pkg" ] || { echo "sample-machine: apt-cache does not know linux-image-cloud-amd64 (apt-get update?)" >&2; exit 69; }
versions="$kernel_pkg=$(apt-cache policy "$kernel_pkg" | awk '/Candidate/ {print $2}') busybox-static=$(apt-cache policy busybox-static | awk '/Candidate/ {print $2}')"
key=$( (echo "$versions $size"; cat "$0" "$here/guest/lifeboat-guest.c") | sha256sum | cut -c1-16)
cached="$cache/sample-machine-$key.img"
if [ -f "$cached" ]; then
  cp --sparse=always "$cached" "$out"
  exit 0
fi

work=$(mktemp -d /var/tmp/lifeboat-image.XXXXXX)
mnt="$work/mnt"
cleanup() {
  set +e
  mountpoint -q "$mnt" && umount "$mnt"
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

(cd "$cache/debs" && for p in "$kernel_pkg" busybox-static; do
   ls "${p}"_*.deb >/dev/null 2>&1 || apt-get download "$p" >/dev/null 2>&1 || { echo "sample-machine: apt-get download $p failed" >&2; exit 69; }
 done)
dpkg-deb -x "$(ls "$cache/debs/${kernel_pkg}"_*.deb)" "$work/kernel"
dpkg-deb -x "$(ls "$cache/debs"/busybox-static_*.deb)" "$work/busybox"
release=${kernel_pkg#linux-image-}
modules="$work/kernel/lib/modules/$release/kernel"

# The initramfs: busybox, the virtio modules in load order, an init that mounts the root.
ird="$work/initramfs"
mkdir -p "$ird"/{bin,dev,proc,sys,root,modules}
cp "$work/busybox/bin/busybox" "$ird/bin/busybox"
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_pci_modern_dev.ko \
         drivers/virtio/virtio_pci_legacy_dev.ko drivers/virtio/virtio_pci.ko drivers/block/virtio_blk.ko \
         drivers/char/virtio_console.ko; do
  cp "$modules/$m" "$ird/modules/"
done
cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
/bin/busybox mount -t devtmpfs dev /dev
/bin/busybox mount -t proc proc /proc
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk virtio_console; do
  /bin/busybox insmod /modules/$m.ko || echo "LIFEBOAT-BOOT FAILED: insmod $m"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do /bin/busybox usleep 50000; n=$((n + 1)); done
if ! /bin/busybox mount -t ext4 -o rw /dev/vda /root; then
  echo "LIFEBOAT-BOOT FAILED: cannot mount /dev/vda"
  /bin/busybox poweroff -f
fi
if /bin/busybox dmesg | /bin/busybox grep -q 'EXT4-fs (vda): recovery complete'; then journal=replayed; else journal=clean; fi
echo "LIFEBOAT-BOOT journal=$journal"
/bin/busybox umount /proc
/bin/busybox mount --move /dev /root/dev
exec /bin/busybox switch_root /root /sbin/init
EOF
chmod 755 "$ird/init"
(cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1 >"$work/initrd.img")

# The root: busybox with its applets, the guest program, the init script, the boot files.
root="$work/root"
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,boot,var/lib/ledger}
cp "$work/busybox/bin/busybox" "$root/bin/busybox"
for a in sh mount umount poweroff sync sleep cat echo ls dmesg; do ln -s busybox "$root/bin/$a"; done
gcc -static -O2 -Wall -Werror -o "$root/bin/lifeboat-guest" "$here/guest/lifeboat-guest.c"
cat >"$root/sbin/init" <<'EOF'
#!/bin/sh
mount -t proc proc /proc
mount -t sysfs sys /sys
/bin/lifeboat-guest probe /var/lib/ledger || { sync; poweroff -f; }
/bin/lifeboat-guest agent &
/bin/lifeboat-guest workload /var/lib/ledger
sync
poweroff -f
EOF
chmod 755 "$root/sbin/init"
cp "$work/kernel/boot/vmlinuz-$release" "$root/boot/vmlinuz"
cp "$work/initrd.img" "$root/boot/initrd.img"
# SERIAL first: without it, boot-loader errors go to a VGA screen no one reads.
cat >"$root/boot/extlinux.conf" <<'EOF'
SERIAL 0 115200
DEFAULT linux
TIMEOUT 0
PROMPT 0
LABEL linux
  KERNEL /boot/vmlinuz
  INITRD /boot/initrd.img
  APPEND console=ttyS0 quiet panic=-1 rw
EOF

# extlinux reads neither 64bit nor metadata_csum_seed ext4; the rest of the defaults are fine.
truncate -s "${size}M" "$work/disk.img"
mkfs.ext4 -q -F -b 4096 -O ^64bit,^metadata_csum_seed -L lifeboat-sample -d "$root" "$work/disk.img"
mkdir -p "$mnt"
mount -o loop "$work/disk.img" "$mnt"
extlinux --install "$mnt/boot" >/dev/null 2>&1 || { echo "sample-machine: extlinux --install failed" >&2; exit 70; }
umount "$mnt"
e2fsck -f -n "$work/disk.img" >/dev/null 2>&1 || { echo "sample-machine: e2fsck finds the built image damaged" >&2; exit 70; }
cp --sparse=always "$work/disk.img" "$cached.tmp" && mv "$cached.tmp" "$cached"
cp --sparse=always "$cached" "$out"
