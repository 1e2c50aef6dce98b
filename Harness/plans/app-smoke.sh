#!/bin/sh
# The application check of the example plan: the order database opens, has orders, and its
# ledger equals the sum of the orders (the invariant each transaction keeps). Run by the
# drill with the target mounted at $LIFEBOAT_TARGET, in a network namespace with only loopback.
set -eu
db="$LIFEBOAT_TARGET/app/orders.db"
orders=$(sqlite3 "$db" "SELECT count(*) FROM orders")
sum=$(sqlite3 "$db" "SELECT coalesce(sum(amount), 0) FROM orders")
total=$(sqlite3 "$db" "SELECT total FROM ledger")
echo "point $LIFEBOAT_POINT_ID (LSN $LIFEBOAT_POINT_LSN): $orders orders, sum $sum, ledger $total"
[ "$sum" = "$total" ] || { echo "ledger $total != sum of orders $sum" >&2; exit 1; }
