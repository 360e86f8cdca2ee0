#!/usr/bin/env bash
# The booking race (issue 6): 64 connections book the same 1,000 free slots of the demo
# alliance through POST Appointment/$book, each slot wanted by several clients at once (each of
# wrk's 2 threads walks the list and asks for every slot 3 times). Reports successful bookings
# per second and the double-booked slots (must be 0), on SQLite and on PostgreSQL.
# Usage: bench/booking.sh   Results: bench/results/booking-<date>/summary.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/results/booking-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p continuum
BIN="$ROOT/target/release"
# shellcheck source=../scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; continuum_stop_postgres; rm -rf "$WORK"; }
trap cleanup EXIT

race() { # ENGINE DATABASE
  local engine=$1 db=$2 port raw
  port=$(free_port)
  start_demo_server "$engine" "$db" "$port"
  TOKEN=$(demo_token "$port")
  export TOKEN
  curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/fhir/Slot?status=free&start=gt$(date -u +%FT%TZ)&_count=1000" \
    | python3 -c 'import json,sys; [print(e["resource"]["id"]) for e in json.load(sys.stdin)["entry"]]' >"$WORK/slots-$engine.txt"
  raw=$(SLOTS_FILE="$WORK/slots-$engine.txt" TRIES=3 wrk -t2 -c64 -d30s --latency -s "$ROOT/bench/lua/booking.lua" "http://127.0.0.1:$port" 2>&1)
  echo "$raw" >"$OUT/$engine.raw"
  # every booked appointment of those slots, counted per slot
  python3 "$ROOT/bench/booked_per_slot.py" "$port" >"$WORK/booked-$engine.json"
  python3 - "$WORK/booked-$engine.json" "$WORK/slots-$engine.txt" "$raw" >>"$OUT/summary.md" "$engine" <<'PY'
import json, re, sys
booked_file, slots_file, raw, engine = sys.argv[1:5]
booked = json.load(open(booked_file))
slots = [l.strip() for l in open(slots_file) if l.strip()]
double = sum(1 for s in slots if booked.get(f"Slot/{s}", 0) > 1)
taken = sum(1 for s in slots if booked.get(f"Slot/{s}", 0) >= 1)
requests = int(re.search(r"(\d+) requests in", raw).group(1))
# the time the slowest wrk thread took to walk the list (booking.lua prints it)
secs = max(float(x) for x in re.findall(r"^elapsed ([\d.]+)", raw, re.M))
p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)", raw, re.M)
# slots booked (wrk may not count the answers in flight when a thread stops)
print(f"| {engine} | {len(slots)} | {requests} | {taken} | {double} | {secs:.2f} s | {taken / secs:,.0f} | {p99.group(1)} {p99.group(2)} |")
PY
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
}

{
  echo "# Booking race $(date -u +%FT%TZ) on $(nproc) cores"
  echo
  echo "| engine | slots | requests | slots booked | double-booked | time to book them | bookings/s | p99 latency |"
  echo "|---|---|---|---|---|---|---|---|"
} >"$OUT/summary.md"
race sqlite "sqlite://$WORK/race.db"
continuum_start_postgres
psql "$CONTINUUM_TEST_POSTGRES_URL" -qc "CREATE DATABASE booking_race_$$"
rm -f "$WORK/demo-client" "$WORK/continuum-demo-client"
race postgres "${CONTINUUM_TEST_POSTGRES_URL%/*}/booking_race_$$"
cat "$OUT/summary.md"
echo "results in $OUT"
