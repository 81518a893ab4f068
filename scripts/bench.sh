#!/usr/bin/env bash
# Runs the measurements docs/performance.md reports, on this machine, and
# leaves each run's JSON in $OUT. Needs a release build and PostgreSQL.
#
#   cargo build --release --bin creditd
#   scripts/bench.sh            # PG defaults to postgres://postgres@127.0.0.1:5432
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/creditd}
PG=${PG:-postgres://postgres@127.0.0.1:5432}
OUT=${OUT:-bench-results}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
KEY=cd_admin_bench0123456789abcdef0123456789abcdef
mkdir -p "$OUT"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

fresh_pg() { psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $1" -c "CREATE DATABASE $1" >/dev/null; }
bench() { "$BIN" bench --seconds "$SECONDS_PER_RUN" "$@"; }

echo "== SQLite, in-process"
bench --store "sqlite://$work/inproc.db" --accounts 1000 --store-clients 1024 \
  --workload consume-hot --json "$OUT/sqlite-inprocess-hot.json"
bench --store "sqlite://$work/inproc2.db" --accounts 10000 --store-clients 64 \
  --json "$OUT/sqlite-inprocess-64.json"
bench --store "sqlite://$work/inproc3.db" --accounts 10000 --store-clients 4 \
  --workload check,consume-spread --json "$OUT/sqlite-inprocess-4.json"

echo "== SQLite, over HTTP"
CREDITD_DATABASE_URL="sqlite://$work/http.db" CREDITD_LISTEN=127.0.0.1:18181 \
  CREDITD_ADMIN_KEY=$KEY CREDITD_LOG=warn "$BIN" serve >"$work/serve.log" 2>&1 &
sleep 1
bench --http http://127.0.0.1:18181 --key $KEY --accounts 10000 --clients 64 \
  --json "$OUT/sqlite-http-64.json"
bench --http http://127.0.0.1:18181 --key $KEY --accounts 10000 --clients 64 \
  --workload check --rate 30000 --json "$OUT/sqlite-http-check-30k.json"
kill %1; wait %1 2>/dev/null || true

echo "== PostgreSQL: creditd against the baseline"
fresh_pg creditd_bench; fresh_pg creditd_baseline
bench --store "$PG/creditd_bench" --baseline "$PG/creditd_baseline" --accounts 10000 \
  --clients 32 --workload consume-hot,consume-spread,check,balance --json "$OUT/postgres-32.json"
for clients in 8 64; do
  bench --baseline "$PG/creditd_baseline" --accounts 10000 --clients $clients \
    --workload consume-hot --json "$OUT/baseline-hot-$clients.json"
done
fresh_pg creditd_http
CREDITD_DATABASE_URL="$PG/creditd_http" CREDITD_LISTEN=127.0.0.1:18182 \
  CREDITD_ADMIN_KEY=$KEY CREDITD_LOG=warn "$BIN" serve >"$work/serve-pg.log" 2>&1 &
sleep 1
# Open the accounts first and refresh the planner's statistics, as
# autovacuum would in a while, so the run measures steady state.
"$BIN" bench --http http://127.0.0.1:18182 --key $KEY --accounts 10000 --clients 32 \
  --prefix pg-http- --workload check --seconds 0.2 --warmup 0 >/dev/null
psql "$PG/creditd_http" -qc ANALYZE
bench --http http://127.0.0.1:18182 --key $KEY --accounts 10000 --clients 32 --prefix pg-http- \
  --skip-setup --workload consume-hot,consume-spread --json "$OUT/postgres-http-32.json"
kill %1; wait %1 2>/dev/null || true

echo "== The gateway against its upstream, called directly"
# The bench serves a fake OpenAI-format upstream on $UPSTREAM for the gateway
# workloads and calls it directly and through creditd, side by side.
UPSTREAM=127.0.0.1:18190
gateway_serve() { # DATABASE_URL LISTEN LOG
  CREDITD_DATABASE_URL="$1" CREDITD_LISTEN="$2" CREDITD_ADMIN_KEY=$KEY CREDITD_LOG=warn \
    CREDITD_UPSTREAM_BASE_URL="http://$UPSTREAM/v1" CREDITD_UPSTREAM_API_KEY=bench-upstream-key \
    "$BIN" serve >"$3" 2>&1 &
  sleep 1
}
gateway_serve "sqlite://$work/gateway.db" 127.0.0.1:18183 "$work/serve-gateway.log"
bench --http http://127.0.0.1:18183 --key $KEY --upstream-listen $UPSTREAM --clients 32 \
  --workload gateway,gateway-stream --json "$OUT/gateway-sqlite.json"
kill %1; wait %1 2>/dev/null || true
fresh_pg creditd_gateway
gateway_serve "$PG/creditd_gateway" 127.0.0.1:18184 "$work/serve-gateway-pg.log"
bench --http http://127.0.0.1:18184 --key $KEY --upstream-listen $UPSTREAM --clients 32 \
  --workload gateway,gateway-stream --json "$OUT/gateway-postgres.json"
kill %1; wait %1 2>/dev/null || true

echo "== The usage summary over a million gateway calls"
bench --store "sqlite://$work/usage.db" --usage-summary-calls 1000000 --json "$OUT/usage-sqlite.json"
fresh_pg creditd_usage
bench --store "$PG/creditd_usage" --usage-summary-calls 1000000 --json "$OUT/usage-postgres.json"
echo "results in $OUT"
