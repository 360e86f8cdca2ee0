#!/usr/bin/env bash
# $find-care latency on a large synthetic directory (issue 5): 300 Locations, 1,500
# HealthcareServices, 3,000 PractitionerRoles, ~3,750 Schedules and ~2.4 M future Slots
# (8 weeks), on SQLite, against the release binary with wrk: p50 and p99 at concurrency 1
# and 16, medians of 3 runs of 15 s after a 10 s warm-up. Requests vary the specialty (30
# SNOMED CT codes), the postal code (20 Connecticut towns), the age (0–26), the modality and
# the urgency (bench/lua/findcare.lua).
# Usage: bench/findcare.sh [--quick]   (--quick: 1 run of 5 s)
# Results go to bench/results/findcare-<date>/ (summary.md and raw wrk output).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=3; DURATION=15
if [ "${1:-}" = "--quick" ]; then RUNS=1; DURATION=5; fi
OUT="$ROOT/bench/results/findcare-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p continuum -p bench
BIN="$ROOT/target/release"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
DB="sqlite://$WORK/findcare.db"

"$BIN/directory" --locations 300 --services 1500 --seed 7 --out "$WORK/directory.ndjson" 2>&1 | tee -a "$OUT/setup.txt"
"$BIN/continuum" import --database "$DB" "$WORK/directory.ndjson" 2>&1 | tee -a "$OUT/setup.txt"
t0=$(date +%s.%N)
"$BIN/continuum" slots generate --weeks 8 --database "$DB" 2>&1 | tee -a "$OUT/setup.txt"
echo "slot generation: $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$t0" "$(date +%s.%N)") s" | tee -a "$OUT/setup.txt"
creds=$("$BIN/continuum" clients add --database "$DB" --name bench --scope 'system/*.cruds')
PORT=$(free_port)
CONTINUUM_LOG=warn CONTINUUM_ADMIN_PASSWORD="benchmark administrator passphrase" \
  "$BIN/continuum" serve --listen "127.0.0.1:$PORT" --database "$DB" >"$OUT/server.log" 2>&1 &
SERVER=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
TOKEN=$(curl -s -u "$(echo "$creds" | sed -n 's/^client_id: //p'):$(echo "$creds" | sed -n 's/^client_secret: //p')" \
  -d grant_type=client_credentials "http://127.0.0.1:$PORT/auth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
export TOKEN
FUTURE=$(curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/fhir/Slot?start=ge$(date -u +%FT%TZ)&_summary=count" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
echo "future slots: $FUTURE" | tee -a "$OUT/setup.txt"
wrk -t2 -c16 -d10s -s "$ROOT/bench/lua/findcare.lua" "http://127.0.0.1:$PORT" >/dev/null 2>&1  # warm-up

run() { # NAME THREADS CONNECTIONS
  local raw
  raw=$(wrk -t"$2" -c"$3" -d"${DURATION}s" --latency -s "$ROOT/bench/lua/findcare.lua" "http://127.0.0.1:$PORT" 2>&1)
  echo "$raw" >>"$OUT/$1.raw"
  wrk_line "$raw" >>"$OUT/$1.txt"
}
for _ in $(seq 1 "$RUNS"); do
  run findcare-c1 1 1
  run findcare-c16 2 16
done
{
  echo "# \$find-care run $(date -u +%FT%TZ) on $(nproc) cores"
  echo
  sed 's/^/    /' "$OUT/setup.txt"
  echo
  echo "| concurrency | req/s | p50 | p99 | non-2xx | runs |"
  echo "|---|---|---|---|---|---|"
  for c in 1 16; do
    f="$OUT/findcare-c$c.txt"
    echo "| $c | $(median $(cut -d' ' -f1 "$f")) | $(median $(cut -d' ' -f2 "$f")) ms | $(median $(cut -d' ' -f3 "$f")) ms | $(python3 -c 'import sys; print(sum(int(l.split()[3]) for l in open(sys.argv[1])))' "$f") | $RUNS |"
  done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results in $OUT"
