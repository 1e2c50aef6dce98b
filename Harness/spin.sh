#!/usr/bin/env bash
# Model-checks the failover protocol (Docs/models/failover.pml, decision 0012) with spin: every
# reachable state of the model must satisfy its assertions, and each deliberately broken variant
# must be refuted — so a check that could no longer fail fails this script too.
#   bash Harness/spin.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Harness/setup.sh >/dev/null
work=$(mktemp -d /tmp/lifeboat-spin.XXXXXX)
trap 'rm -rf "$work"' EXIT
cp Docs/models/failover.pml "$work/"
cd "$work"
# Exhaustive search of the safety properties (no state is left out: -m bounds the depth only,
# far above the model's); prints the verifier's summary.
check() {
  spin -a "$@" failover.pml >/dev/null
  gcc -O2 -DSAFETY -w -o pan pan.c
  ./pan -m1000000 > pan.out 2>&1 || true
  if grep -q "max search depth too small" pan.out; then echo "spin: the search was cut short" >&2; cat pan.out >&2; exit 1; fi
  grep -Eo "errors: [0-9]+" pan.out | awk '{print $2}'
}
errors=$(check)
states=$(grep -E "states, stored" pan.out | awk '{print $1}')
if [ "$errors" != 0 ]; then
  echo "spin: the failover model violates a property:" >&2
  cat pan.out >&2
  spin -t -p failover.pml | tail -60 >&2
  exit 1
fi
echo "failover model: $states states, every property holds"
for broken in BROKEN_MARKER_FIRST BROKEN_NO_FENCE BROKEN_IN_PLACE BROKEN_SAME_GENERATION; do
  errors=$(check -D$broken)
  if [ "$errors" = 0 ]; then
    echo "spin: the variant $broken was not refuted: the model no longer checks what it claims" >&2
    exit 1
  fi
  echo "  $broken: refuted ($(grep -m1 'assertion violated' pan.out | sed 's/^pan:1: //'))"
done
