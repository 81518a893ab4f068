#!/usr/bin/env bash
# Measures how long the Credits page of an account with 10,000
# transactions takes to render: the server's time to first byte of each
# page, seen by curl on the same machine, over many fetches.
#
#   cargo build --release --bin creditd
#   scripts/dashboard-bench.sh          # FETCHES=200 by default
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/creditd}
FETCHES=${FETCHES:-200}
PORT=${PORT:-18282}
KEY=cd_admin_bench0123456789abcdef0123456789abcdef
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
base=http://127.0.0.1:$PORT

CREDITD_DATABASE_URL="sqlite://$work/dash.db" CREDITD_LISTEN=127.0.0.1:$PORT \
  CREDITD_ADMIN_KEY=$KEY CREDITD_LOG=warn "$BIN" serve >"$work/serve.log" 2>&1 &
for _ in $(seq 1 50); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
api() { curl -sf -H "Authorization: Bearer $KEY" -H 'content-type: application/json' "$@"; }

api -X POST "$base/v1/accounts" -d '{"id": "heavy", "name": "Heavy user"}' >/dev/null
echo "== writing 10,000 transactions (5,000 grants, 5,000 consumes)"
# 32 requests at a time; each grant and consume named by its external id.
write() {
  local kind=$1 body=$2
  seq 1 5000 | xargs -P 32 -I{} curl -sf -o /dev/null -H "Authorization: Bearer $KEY" \
    -H 'content-type: application/json' -X POST "$base/v1/accounts/heavy/$kind" \
    -d "$body"
}
write grants '{"amount": "10", "source": "purchase", "external_id": "g{}"}'
write consume '{"amount": "3", "external_id": "c{}"}'
count=$(api "$base/v1/accounts/heavy/balance?include=totals" | grep -o '"available":"[^"]*"')
echo "   $count"

url=$(api -X POST "$base/v1/accounts/heavy/dashboard-sessions" | sed 's/.*"url":"\([^"]*\)".*/\1/')
cookie=$(curl -s -o /dev/null -D - "$url" | sed -n 's/^set-cookie: \([^;]*\);.*/\1/ip')

measure() {
  local path=$1
  for _ in $(seq 1 10); do curl -s -o /dev/null -H "cookie: $cookie" "$base$path"; done
  for _ in $(seq 1 "$FETCHES"); do
    curl -s -o /dev/null -w '%{http_code} %{time_starttransfer}\n' -H "cookie: $cookie" "$base$path"
  done | awk -v path="$path" '
    $1 != 200 { bad++ }
    { t[NR] = $2 * 1000 }
    END {
      n = asort(t)
      printf "%-28s %d fetches  p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms  non-200: %d\n",
        path, n, t[int(n * 0.5)], t[int(n * 0.9)], t[int(n * 0.99)], t[n], bad
    }'
}

echo "== server time to first byte, $FETCHES fetches each"
measure /dashboard
measure /dashboard/history
measure "/dashboard/history?type=purchase"
measure /dashboard/usage
measure /dashboard/keys
