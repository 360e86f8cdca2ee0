#!/usr/bin/env bash
# Continuum's benchmarks, measured side by side in one run and summarised as medians:
#   - the CRUD mix and the search mix (wrk, 32 connections) against the release binary on
#     SQLite, with 1,000 and 64,000 synthetic patients (p50 growth between the two),
#   - `continuum import` of NDJSON and 100-entry transaction Bundles over HTTP,
#   - the raw SQLite ceiling (the same inserts and point reads without HTTP),
#   - the CRUD mix and import on PostgreSQL,
#   - the query plans of the top searches on both engines.
# Usage: bench/run.sh [--quick]   (--quick: 1 run of 8 s, 1,000 and 8,000 patients)
# Results go to bench/results/<date>/ (summary.md, raw wrk output, plans).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=3; DURATION=15; SIZES="1000 64000"
if [ "${1:-}" = "--quick" ]; then RUNS=1; DURATION=8; SIZES="1000 8000"; fi
OUT="$ROOT/bench/results/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p continuum -p bench
BIN="$ROOT/target/release"
# shellcheck source=../scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; continuum_stop_postgres; }
trap cleanup EXIT


# start_server DATABASE → sets PORT, TOKEN, SERVER
start_server() {
  local db=$1 creds
  "$BIN/continuum" migrate --database "$db" >/dev/null
  creds=$("$BIN/continuum" clients add --database "$db" --name bench --scope 'system/*.cruds')
  PORT=$(free_port)
  CONTINUUM_LOG=warn CONTINUUM_ADMIN_PASSWORD="benchmark administrator passphrase" \
    "$BIN/continuum" serve --listen "127.0.0.1:$PORT" --database "$db" >"$OUT/server-$PORT.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  TOKEN=$(curl -s -u "$(echo "$creds" | sed -n 's/^client_id: //p'):$(echo "$creds" | sed -n 's/^client_secret: //p')" \
    -d grant_type=client_credentials "http://127.0.0.1:$PORT/auth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  export TOKEN
}
stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""; }

# run_wrk NAME SCRIPT PATIENTS → appends "rps p50 p99" to $OUT/NAME.txt
run_wrk() {
  local name=$1 script=$2 patients=$3 raw
  raw=$(PATIENTS=$patients wrk -t2 -c32 -d"${DURATION}s" --latency -s "$ROOT/bench/lua/$script" "http://127.0.0.1:$PORT" 2>&1)
  echo "$raw" >>"$OUT/$name.raw"
  wrk_line "$raw" >>"$OUT/$name.txt"
}

summary() { # NAME → "median rps | median p50 | median p99"
  local f="$OUT/$1.txt"
  echo "$(median $(cut -d' ' -f1 "$f")) req/s, p50 $(median $(cut -d' ' -f2 "$f")) ms, p99 $(median $(cut -d' ' -f3 "$f")) ms (non-2xx: $(python3 -c 'import sys; print(sum(int(l.split()[3]) for l in open(sys.argv[1])))' "$f"))"
}

import_rate() { # DATABASE FILE → resources/s
  "$BIN/continuum" import --database "$1" "$2" 2>/dev/null | sed -n 's/.*(\([0-9]*\)\/s).*/\1/p'
}

echo "# Benchmark run $(date -u +%FT%TZ) on $(nproc) cores" >"$OUT/summary.md"
for engine in sqlite postgres; do
  if [ "$engine" = postgres ]; then continuum_start_postgres; fi
  for n in $SIZES; do
    if [ "$engine" = postgres ] && [ "$n" != "${SIZES%% *}" ]; then continue; fi
    work=$(mktemp -d)
    "$BIN/synth" --patients "$n" --seed 7 --out "$work/data.ndjson" 2>/dev/null
    for run in $(seq 1 "$RUNS"); do
      if [ "$engine" = sqlite ]; then db="sqlite://$work/import-$run.db"; else
        name="bench_${n}_${run}_$$"; psql "$CONTINUUM_TEST_POSTGRES_URL" -qc "CREATE DATABASE $name"; db="${CONTINUUM_TEST_POSTGRES_URL%/*}/$name"; fi
      import_rate "$db" "$work/data.ndjson" >>"$OUT/import-$engine-$n.txt"
    done
    start_server "$db"
    # the search mix first, on the data set as generated (the CRUD mix then adds patients)
    if [ "$engine" = sqlite ]; then
      for run in $(seq 1 "$RUNS"); do run_wrk "search-$engine-$n" search.lua "$n"; done
    fi
    for run in $(seq 1 "$RUNS"); do
      run_wrk "crud-$engine-$n" crud.lua "$n"
      if [ "$engine" = sqlite ]; then
        if [ "$n" = "${SIZES%% *}" ]; then
          run_wrk "read-$engine-$n" read.lua "$n"
          run_wrk "create-$engine-$n" create.lua "$n"
        fi
      fi
    done
    if [ "$n" = "${SIZES%% *}" ]; then
      for run in $(seq 1 "$RUNS"); do run_wrk "bundle-$engine" bundle.lua "$n"; done
      "$BIN/explain" --database "$db" >"$OUT/plans-$engine.md" 2>&1 || true
    fi
    stop_server
    rm -rf "$work"
  done
done
for run in $(seq 1 "$RUNS"); do "$BIN/ceiling" --rows 50000 --readers 2 --seconds 5 >>"$OUT/ceiling.txt"; done

{
  echo
  for f in "$OUT"/crud-*.txt "$OUT"/search-*.txt "$OUT"/read-*.txt "$OUT"/create-*.txt "$OUT"/bundle-*.txt; do
    [ -f "$f" ] && echo "- $(basename "$f" .txt): $(summary "$(basename "$f" .txt)")"
  done
  for f in "$OUT"/import-*.txt; do echo "- $(basename "$f" .txt): median $(median $(cat "$f")) resources/s"; done
  echo "- bundle resources/s (×100 entries): see bundle-* req/s × 100"
  echo "- ceiling runs:"; sed 's/^/  - /' "$OUT/ceiling.txt"
} >>"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results in $OUT"
