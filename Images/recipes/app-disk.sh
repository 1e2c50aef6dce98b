#!/usr/bin/env bash
# The sample application disk of the CI drill: an ext4 filesystem with a deterministic file
# tree (checked by Harness/plans/app-tree.sha256) and a SQLite database kept under write load.
#
#   app-disk.sh populate FSROOT   write the tree and create the database
#   app-disk.sh load FSROOT       run transactions until killed (SIGTERM)
#   app-disk.sh manifest FSROOT   print the tree's manifest (sha256sum format)
#
# The database's invariant, checked by Harness/plans/app-smoke.sh at every recovery point:
# ledger.total equals the sum of orders.amount (each transaction inserts an order and adds
# it to the ledger, atomically). A point that is crash-consistent for SQLite keeps it.
set -euo pipefail
cmd=$1 root=$2

populate() {
  mkdir -p "$root/app/tree"
  # Deterministic content: the same tree, byte for byte, on every run and machine.
  for d in $(seq 1 8); do
    mkdir -p "$root/app/tree/dir$d"
    for f in $(seq 1 16); do
      seq $((d * 1000 + f)) $((d * 1000 + f + d * f * 200)) > "$root/app/tree/dir$d/file$f.txt"
    done
  done
  head -c $((4 << 20)) /dev/zero | tr '\0' 'L' > "$root/app/tree/large.bin"
  sqlite3 "$root/app/orders.db" >/dev/null <<'SQL'
PRAGMA journal_mode = DELETE;
CREATE TABLE orders(id INTEGER PRIMARY KEY, amount INTEGER NOT NULL, note TEXT NOT NULL);
CREATE TABLE ledger(id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL);
INSERT INTO ledger VALUES (1, 0);
SQL
}

load() {
  trap 'exit 0' TERM INT
  local n=0
  while true; do
    n=$((n + 1))
    sqlite3 "$root/app/orders.db" "BEGIN; INSERT INTO orders(amount, note) VALUES ($n, hex(randomblob(200))); UPDATE ledger SET total = total + $n; COMMIT;"
    echo "order $n" >> "$root/app/orders.log"
  done
}

manifest() { (cd "$root" && find app/tree -type f | sort | xargs sha256sum); }

case $cmd in
  populate) populate ;;
  load) load ;;
  manifest) manifest ;;
  *) echo "usage: $0 populate|load|manifest FSROOT" >&2; exit 64 ;;
esac
