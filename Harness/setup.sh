#!/usr/bin/env bash
# Installs what Lifeboat needs on a fresh Debian 12 machine (run as root). Idempotent.
# Swift itself is not a Debian package: it must already be on PATH (swift.org toolchain).
set -euo pipefail

packages=(
  fuse3 libfuse3-dev          # FUSE: the protect and point-view mounts
  libzstd-dev libxxhash-dev   # compression (shipping) and the block digest hash
  libsqlite3-dev              # the vault catalog (GRDB uses the system SQLite)
  pkg-config gcc              # system-library targets; the C FUSE baseline of the benchmark
  e2fsprogs xfsprogs util-linux mount   # mkfs/fsck, losetup, fsfreeze, unshare
  fio qemu-utils libvhdi-utils          # oracles in tests and benchmarks
  sqlite3 iproute2 coreutils            # drills: the sample app's database, network checks, sha256sum
  qemu-system-x86 extlinux syslinux-common cpio libc6-dev   # boot drills: qemu; the sample machine's recipe
  openssl                               # the outside judge of enrolled certificates in tests
  python3-cryptography zstd             # the outside reader of an encrypted vault (Harness/oracles/open-sealed.py)
  nftables iputils-ping                 # test hosts: loss on their links, reachability
  spin                                  # the failover protocol's model check (Harness/spin.sh)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages)" >&2
  exit 77
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if ! command -v swift >/dev/null; then
  for d in /opt/swift/usr/bin /usr/share/swift/usr/bin; do [ -x "$d/swift" ] && export PATH="$d:$PATH"; done
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install a Swift 6 toolchain from swift.org)" >&2; exit 69; }
[ -e /dev/fuse ] || modprobe fuse 2>/dev/null || true
