#!/usr/bin/env bash
# libFuzzer on every parser of untrusted bytes (Harness/fuzz/: one executable per target).
#   bash Harness/fuzz.sh --list                 the targets
#   bash Harness/fuzz.sh TARGET SECONDS         fuzz one target
#   bash Harness/fuzz.sh all SECONDS            each target in turn (CI: a few seconds each)
# FUZZ_SEED=N and FUZZ_RUNS=N make a run repeatable (libFuzzer's -seed and -runs; CI uses both,
# so that a red CI is a regression, not chance). Corpora live in .build-fuzz/corpus/TARGET,
# seeded from the project's fixtures. A crash stops
# the run (exit 1) and is written to Harness/fuzz/crashes/TARGET-…: fix it and keep the input
# as a regression test. Prints the executions reached per target.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(journal-segment layer base-checksums catalog-values vhd drill-plan control-message marker wire-frame dirty-regions)

if [ "${1:-}" = "--list" ]; then printf '%s\n' "${targets[@]}"; exit 0; fi
[ $# -eq 2 ] || { echo "usage: bash Harness/fuzz.sh --list | TARGET SECONDS | all SECONDS" >&2; exit 64; }
which=$1 seconds=$2
if [ "$which" != all ] && ! printf '%s\n' "${targets[@]}" | grep -qx "$which"; then
  echo "fuzz.sh: unknown target '$which' (known: ${targets[*]})" >&2; exit 64
fi
source Harness/setup.sh

echo "== building the fuzz targets (libFuzzer, -sanitize=fuzzer)"
(cd Harness/fuzz && swift build -c release --scratch-path ../../.build-fuzz \
   -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library 2>&1 | tail -1)
bin=$(cd Harness/fuzz && swift build -c release --scratch-path ../../.build-fuzz --show-bin-path)

seed() {  # seed DIR TARGET: the fixtures a target starts from
  local dir=$1
  case $2 in
    journal-segment) cp Tests/LifeboatJournalTests/Fixtures/journal-v1.seg "$dir/" ;;
    layer)           cp Tests/LifeboatVaultTests/Fixtures/layer-v1.layer Tests/LifeboatVaultTests/Fixtures/layer-v2-sealed.layer "$dir/" ;;
    vhd)             head -c 65536 Images/fixtures/qemu-dynamic.vhd > "$dir/head.vhd"
                     cp Images/fixtures/qemu-dynamic.vhd "$dir/" ;;
    drill-plan)      cp Harness/plans/example.yaml "$dir/" ;;
    marker)          # the marker payload of the golden segment (Docs/formats/journal.md: 44 bytes at 0x1098)
                     dd if=Tests/LifeboatJournalTests/Fixtures/journal-v1.seg of="$dir/marker" bs=1 skip=$((0x1098)) count=44 status=none ;;
    catalog-values)  printf '{"0":"c3f216acea42e8af1f18738d02e6f37e","1":"00000000000000010000000000000002"}' > "$dir/digests"
                     printf '{"window":86400,"keepAll":7200,"every":3600}' > "$dir/retention" ;;
    control-message) printf '{"op":"mark","kind":"app-consistent","label":"nightly"}' > "$dir/mark"
                     printf '{"op":"point","lsn":42,"waitMilliseconds":3000,"note":"not app-consistent: x"}' > "$dir/point" ;;
    base-checksums)  printf '\004' > "$dir/sums"; head -c 16 /dev/zero >> "$dir/sums" ;;
    wire-frame)      # a `pointAt` request (4 + 36-byte header), a `ship` with a 4-byte body (Docs/formats/wire.md)
                     printf '\000\000\000\050\000\000\000\044{"op":"pointAt","lsn":42,"note":"x"}' > "$dir/point"
                     printf '\000\000\000\025\000\000\000\015{"op":"ship"}zstd' > "$dir/ship" ;;
    dirty-regions)   cp Tests/LifeboatSiteTests/Fixtures/dirty-regions-v1 "$dir/" ;;
  esac
}

mkdir -p Harness/fuzz/crashes
# The targets that parse files write them to /dev/shm (FuzzFile): leave none behind.
trap 'rm -f /dev/shm/lifeboat-fuzz-*' EXIT
status=0
for t in "${targets[@]}"; do
  [ "$which" = all ] || [ "$which" = "$t" ] || continue
  corpus=.build-fuzz/corpus/$t
  mkdir -p "$corpus"
  [ -n "$(ls -A "$corpus")" ] || seed "$corpus" "$t"
  log=.build-fuzz/$t.log
  # -rss_limit_mb: a parser must not be made to allocate without bound by its input.
  # SWIFT_BACKTRACE off: libFuzzer, not Swift's backtracer, must catch a crash to save its input.
  limits=(-max_total_time="$seconds" -seed="${FUZZ_SEED:-0}")
  [ -z "${FUZZ_RUNS:-}" ] || limits+=(-runs="$FUZZ_RUNS")
  if SWIFT_BACKTRACE=enable=no "$bin/fuzz-$t" "$corpus" "${limits[@]}" -rss_limit_mb=2048 -max_len=1048576 \
       -artifact_prefix="Harness/fuzz/crashes/$t-" -print_final_stats=1 >"$log" 2>&1; then
    result=ok
  else
    result="CRASH (see $log and Harness/fuzz/crashes/$t-*)"; status=1
  fi
  execs=$(grep -m1 'stat::number_of_executed_units' "$log" | awk '{print $2}' || true)
  printf '%-16s %12s executions (time limit %ss): %s\n' "$t" "${execs:-?}" "$seconds" "$result"
done
exit $status
