#!/usr/bin/env bash
# How fast PostgreSQL itself can run creditd's write batches, with no creditd
# process in the way: pgbench, a C client with almost no cost of its own,
# sends the statements of a batch of consumes on accounts chosen at random,
# as creditd's PostgreSQL writer does, and reports transactions (batches) a
# second. Multiply by the batch size for consumes a second.
#
# Needs a database that `creditd bench --store postgres://…/DB --prefix pgb-`
# has set up (10,000 accounts pgb-s0 … pgb-s9999):
#
#   scripts/pg-ceiling.sh postgres://postgres@127.0.0.1:5432/creditd_bench
#
# Environment: BATCH (consumes per batch, 16), CONNECTIONS ("2 4"), RUN_SECONDS (10).
set -euo pipefail
URL=${1:?usage: scripts/pg-ceiling.sh POSTGRES_URL}
BATCH=${BATCH:-16}
CONNECTIONS=${CONNECTIONS:-"2 4"}
RUN_SECONDS=${RUN_SECONDS:-10}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

vars=""
accounts=""
keys=""
for i in $(seq 1 "$BATCH"); do
  vars+="\\set a$i random(0, 9999)"$'\n'
  accounts+="${accounts:+,}'pgb-s' || :a$i"
  keys+="${keys:+,}:a$i"
done
accounts="ARRAY[$accounts]::text[]"
keys="ARRAY[$keys]::int8[]"
writes="UPDATE lots l SET remaining = l.remaining - 1000000 FROM (SELECT id FROM lots WHERE account_id = ANY($accounts) AND live) u WHERE l.id = u.id;
INSERT INTO transactions (id, account_id, kind, amount, usage, balance_after, postings, sources, created_at, metadata) SELECT nextval('transaction_ids'), a, 'consume', -1000000, 1000000, 0, 'usage=1000000', '', 0, '{}' FROM unnest($accounts) AS a;"

# A whole batch: lock the accounts in order, read their books, draw ids, write, commit.
cat >"$work/batch.sql" <<EOF
${vars}BEGIN;
SELECT pg_advisory_xact_lock(k) FROM (SELECT DISTINCT unnest($keys) AS k ORDER BY 1) s;
SELECT id, name, metadata, overdraft_limit, debt, created_at FROM accounts WHERE id = ANY($accounts);
SELECT id, account_id, source, priority, amount, remaining, effective_at, expires_at, voided_at, created_at, metadata FROM lots WHERE account_id = ANY($accounts) AND live;
SELECT id FROM holds WHERE account_id = ANY($accounts) AND status = 'pending';
SELECT ARRAY(SELECT nextval('transaction_ids') FROM generate_series(1, $BATCH));
$writes
COMMIT;
EOF
# Only the writes and the commit: what a store that never read a book from
# PostgreSQL would still ask of it.
cat >"$work/writes.sql" <<EOF
${vars}BEGIN;
$writes
COMMIT;
EOF

for script in batch writes; do
  for connections in $CONNECTIONS; do
    if ! out=$(pgbench "$URL" -n -M prepared -c "$connections" -j 2 -T "$RUN_SECONDS" \
                 -f "$work/$script.sql" 2>&1); then
      echo "$out" >&2
      exit 1
    fi
    tps=$(echo "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
    printf '%-7s %2d connections x %d consumes: %8.0f batches/s = %8.0f consumes/s\n' \
      "$script" "$connections" "$BATCH" "$tps" "$(echo "$tps * $BATCH" | bc)"
  done
done
