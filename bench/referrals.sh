#!/usr/bin/env bash
# Referral worklists and measures (issue 18) on a synthetic history of N referrals (default
# 100,000: bench/referrals.py — ServiceRequest + Task pairs over the last year, 60 services, 40
# practices, N/5 patients), imported with `continuum import` into SQLite, against the release
# binary: the worklist (`GET /api/worklists/referrals`, 50 a page, as a coordinator of the
# receiving member — every request audited) with wrk at concurrency 1 and 16, p50/p99, medians
# of 3 runs of 10 s; the measures for a year (`GET /api/metrics/referrals`, as the member's
# coordinator and alliance-wide as the backend client), the median and slowest of 10 requests;
# then the same on the demo (`serve --demo`, its 320 referrals).
# Usage: bench/referrals.sh [--quick] [N]   (--quick: 1 run of 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=3; DURATION=10
if [ "${1:-}" = "--quick" ]; then RUNS=1; DURATION=5; shift; fi
N=${1:-100000}
OUT="$ROOT/bench/results/referrals-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p continuum
BIN="$ROOT/target/release"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
DB="sqlite://$WORK/referrals.db"
python3 "$ROOT/bench/referrals.py" "$N" "$WORK/history.ndjson"
t0=$(date +%s.%N)
"$BIN/continuum" import --database "$DB" "$WORK/history.ndjson" >"$OUT/import.txt" 2>&1
echo "import of $N referrals ($(wc -l <"$WORK/history.ndjson") resources): $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t0" "$(date +%s.%N)") s" | tee -a "$OUT/setup.txt"
id_secret() { echo "$1" | sed -n 's/^client_id: //p' | tr -d '\n'; echo -n ":"; echo "$1" | sed -n 's/^client_secret: //p'; }
admin=$(id_secret "$("$BIN/continuum" clients add --database "$DB" --name bench --scope 'system/*.cruds')")
coord=$(id_secret "$("$BIN/continuum" clients add --database "$DB" --name intake --scope 'user/*.cruds' --role coordinator@cc)")
PORT=$(free_port)
CONTINUUM_LOG=warn CONTINUUM_ADMIN_PASSWORD="benchmark administrator passphrase" \
  "$BIN/continuum" serve --listen "127.0.0.1:$PORT" --database "$DB" >"$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 300); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
tok() { curl -s -u "$1" -d grant_type=client_credentials "http://127.0.0.1:$PORT/auth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
ADMIN=$(tok "$admin"); COORD=$(tok "$coord")
API="http://127.0.0.1:$PORT/api"
for state in open overdue; do
  n=$(curl -s -H "Authorization: Bearer $COORD" "$API/worklists/referrals?organization=cc&state=$state&_count=50" | python3 -c 'import json,sys; print(json.load(sys.stdin)["count"])')
  echo "worklist $state: $n on the first page" | tee -a "$OUT/setup.txt"
done
wrk -t1 -c4 -d5s -H "Authorization: Bearer $COORD" "$API/worklists/referrals?organization=cc&state=open&_count=50" >/dev/null 2>&1  # warm-up
run() { # NAME STATE THREADS CONNECTIONS
  local raw
  raw=$(wrk -t"$3" -c"$4" -d"${DURATION}s" --latency -H "Authorization: Bearer $COORD" "$API/worklists/referrals?organization=cc&state=$2&_count=50" 2>&1)
  echo "$raw" >>"$OUT/$1.raw"
  wrk_line "$raw" >>"$OUT/$1.txt"
}
for _ in $(seq 1 "$RUNS"); do
  for state in open overdue; do run "worklist-$state-c1" $state 1 1; run "worklist-$state-c16" $state 2 16; done
done
from=$(date -u -d '-365 days' +%F); to=$(date -u -d '+1 day' +%F)
measure() { # NAME TOKEN QUERY
  for _ in $(seq 1 10); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $2" "$API/metrics/referrals?from=$from&to=$to&$3"
  done >"$OUT/$1.txt"
}
measure metrics-cc-month "$COORD" "organization=cc&group_by=month"
measure metrics-all-org "$ADMIN" "group_by=organization"
measure metrics-all-service-csv "$ADMIN" "group_by=service&format=csv"
# every measure of the catalogue (issue 22: referrals, visits, free slots, the transition registry)
measures() { # NAME TOKEN QUERY
  for _ in $(seq 1 10); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer $2" "$API/measures?from=$from&to=$to&$3"
  done >"$OUT/$1.txt"
}
measures measures-cc-month "$COORD" "organization=cc&by=month"
measures measures-all-month-service-age "$ADMIN" "by=month,organization,service,age_band"
# the demo
kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true
DPORT=$(free_port)
start_demo_server sqlite "sqlite://$WORK/demo.db" "$DPORT"
(cd "$WORK" && "$BIN/continuum" clients add --database "sqlite://$WORK/demo.db" --name intake --scope 'user/*.cruds' --role coordinator@cc --credentials-file intake-client >/dev/null)
DCOORD=$(curl -s -u "$(cat "$WORK/intake-client")" -d grant_type=client_credentials "http://127.0.0.1:$DPORT/auth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
DADMIN=$(demo_token "$DPORT")
DAPI="http://127.0.0.1:$DPORT/api"
sleep 30   # the start-up jobs (slot generation, the identity model, the first deliveries) finish first
wrk -t1 -c4 -d5s -H "Authorization: Bearer $DCOORD" "$DAPI/worklists/referrals?organization=cc&state=open&_count=50" >/dev/null 2>&1  # warm-up
for c in 1 16; do
  raw=$(wrk -t$(( c > 1 ? 2 : 1 )) -c$c -d"${DURATION}s" --latency -H "Authorization: Bearer $DCOORD" "$DAPI/worklists/referrals?organization=cc&state=open&_count=50" 2>&1)
  echo "$raw" >>"$OUT/demo-worklist-c$c.raw"
  wrk_line "$raw" >>"$OUT/demo-worklist-c$c.txt"
done
API=$DAPI
measure demo-metrics-cc-month "$DCOORD" "organization=cc&group_by=month"
measure demo-metrics-all-org "$DADMIN" "group_by=organization"
{
  echo "# Referral worklists and measures, $(date -u +%FT%TZ), $(nproc) cores"
  echo
  sed 's/^/    /' "$OUT/setup.txt"
  echo
  echo "| worklist | concurrency | req/s | p50 | p99 | non-2xx | runs |"
  echo "|---|---|---|---|---|---|---|"
  for state in open overdue; do for c in 1 16; do
    f="$OUT/worklist-$state-c$c.txt"
    echo "| $state | $c | $(median $(cut -d' ' -f1 "$f")) | $(median $(cut -d' ' -f2 "$f")) ms | $(median $(cut -d' ' -f3 "$f")) ms | $(python3 -c 'import sys; print(sum(int(l.split()[3]) for l in open(sys.argv[1])))' "$f") | $RUNS |"
  done; done
  for c in 1 16; do
    f="$OUT/demo-worklist-c$c.txt"
    echo "| demo, open | $c | $(cut -d' ' -f1 "$f") | $(cut -d' ' -f2 "$f") ms | $(cut -d' ' -f3 "$f") ms | $(cut -d' ' -f4 "$f") | 1 |"
  done
  echo
  echo "| measures for a year | median | slowest (of 10) |"
  echo "|---|---|---|"
  for m in metrics-cc-month metrics-all-org metrics-all-service-csv measures-cc-month measures-all-month-service-age demo-metrics-cc-month demo-metrics-all-org; do
    echo "| $m | $(python3 -c 'import sys,statistics; v=[float(l)*1000 for l in open(sys.argv[1])]; print(f"{statistics.median(v):.0f} ms | {max(v):.0f} ms")' "$OUT/$m.txt") |"
  done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results in $OUT"
