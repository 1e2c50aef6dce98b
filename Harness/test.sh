#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and runs the whole test suite. Tests that need
# root and /dev/fuse (real mounts, loop devices) run here; elsewhere they report as skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
source Harness/setup.sh
swift build --build-tests
swift test "$@"
# Nothing may be left behind by the tests.
leftover=$(grep -E ' fuse(\.[a-z0-9_-]+)? |lifeboat-' /proc/mounts || true)
loops=$(losetup -a | grep lifeboat- || true)
namespaces=$(ip netns list 2>/dev/null | grep -E '^lb[rh]-' || true)
qemus=$(pgrep -a qemu-system || true)
if [ -n "$leftover$loops$namespaces$qemus" ]; then
  echo "test.sh: the tests left mounts, loop devices, network namespaces or VMs behind:" >&2
  echo "$leftover$loops$namespaces$qemus" >&2
  exit 1
fi
