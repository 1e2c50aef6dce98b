#!/usr/bin/env bash
# The CI drill (called from .ci/run): builds the sample application disk from its recipe
# (Images/recipes/app-disk.sh: ext4, a file tree, a SQLite database under write load),
# protects it, takes an app-consistent point and crash-consistent points while the load runs,
# and drills the app-consistent point and the newest crash-consistent one with the example
# plan (Harness/plans/example.yaml). Fails on any failed check. Reports go to $DRILL_REPORTS
# (default: ./drill-reports): JUnit XML for the CI's test view, JSON for the record.
set -euo pipefail
cd "$(dirname "$0")/.."
source Harness/setup.sh
swift build --product lifeboat 2>&1 | tail -1
lifeboat=$(swift build --show-bin-path)/lifeboat
reports=${DRILL_REPORTS:-$PWD/drill-reports}
mkdir -p "$reports"

work=$(mktemp -d /tmp/lifeboat-ci-drill.XXXXXX)
mnt=$work/mnt fs=$work/fs loopdev="" protect_pid="" load_pid=""
cleanup() {
  set +e
  [ -n "$load_pid" ] && kill "$load_pid" 2>/dev/null && wait "$load_pid"
  mountpoint -q "$fs" && umount "$fs"
  [ -n "$loopdev" ] && losetup -d "$loopdev"
  if [ -n "$protect_pid" ] && kill -0 "$protect_pid" 2>/dev/null; then kill -TERM "$protect_pid"; wait "$protect_pid"; fi
  mountpoint -q "$mnt" && umount -l "$mnt"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT; trap 'exit 143' TERM  # a signal ends the script (cleanup runs at exit), not only the step it came in
mkdir -p "$mnt" "$fs"
export LIFEBOAT_SITE=$work/site LIFEBOAT_VAULT=$work/vault LIFEBOAT_DRILL_DIR=$work/drills

echo "== sample disk: protect, ext4, the recipe's tree and database"
$lifeboat init
$lifeboat disk create app0 --size 512M
$lifeboat protect "$mnt" --point-interval 2 2>"$work/protect.log" & protect_pid=$!
for _ in $(seq 100); do mountpoint -q "$mnt" && break; sleep 0.1; done
mountpoint -q "$mnt" || { cat "$work/protect.log" >&2; exit 1; }
mkfs.ext4 -q -F "$mnt/app0.img"
loopdev=$(losetup -f --show "$mnt/app0.img")
mount "$loopdev" "$fs"
bash Images/recipes/app-disk.sh populate "$fs"
sync

echo "== write load, an app-consistent point in the middle of it, crash-consistent points"
bash Images/recipes/app-disk.sh load "$fs" & load_pid=$!
sleep 3
$lifeboat checkpoint --app-consistent --label ci
sleep 5
$lifeboat checkpoint --label ci-under-load   # a crash-consistent point taken while the load runs
kill "$load_pid"; wait "$load_pid" || true; load_pid=""
$lifeboat points

status=0
for point in latest-app latest; do
  echo "== drill at $point"
  $lifeboat drill Harness/plans/example.yaml --point "$point" \
    --junit "$reports/drill-$point.xml" --report-json "$reports/drill-$point.json" || status=$?
done
$lifeboat points
$lifeboat status | grep "verified RPO"
[ "$status" -eq 0 ] || { echo "ci-drill: a drill failed (exit $status); reports in $reports" >&2; exit "$status"; }
left=$(ls -A "$work/drills" 2>/dev/null || true)
[ -z "$left" ] || { echo "ci-drill: drills left working directories: $left" >&2; exit 1; }
echo "ci-drill: every check passed; reports in $reports"
