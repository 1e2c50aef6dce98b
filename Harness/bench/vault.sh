#!/usr/bin/env bash
# Vault benchmarks (issue 3): ingest throughput, and point open / random read time as the
# number of layers grows, before and after compaction. Release build.
#   bash Harness/bench/vault.sh [open|ingest|ship|reads|all]
set -euo pipefail
cd "$(dirname "$0")/../.."
source Harness/setup.sh
swift build -c release --product lifeboat-bench 2>&1 | tail -1
"$(swift build -c release --show-bin-path)/lifeboat-bench" "${1:-all}"
