#!/usr/bin/env bash
# The crash test (issues 6 and 17): 64 clients race to book 1,000 demo slots (each walking the
# whole list, so every slot is wanted by all of them) while 16 read demo Patients; after
# KILL_AFTER seconds the server is killed with SIGKILL mid-race, then restarted on the same
# database. Checks that every booking a client saw confirmed (200) is in the database, booked,
# on its slot, with its AuditEvent; that every read a client was answered left its AuditEvent;
# that no slot is double-booked; and that `continuum audit verify` finds the chain intact — on
# SQLite and on PostgreSQL.
# Usage: bench/crash.sh   Results: bench/results/crash-<date>/summary.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/results/crash-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
KILL_AFTER=${KILL_AFTER:-2}
cargo build --release -q -p continuum
BIN="$ROOT/target/release"
# shellcheck source=../scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null || true; continuum_stop_postgres; rm -rf "$WORK"; }
trap cleanup EXIT

crash() { # ENGINE DATABASE
  local engine=$1 db=$2 port
  port=$(free_port)
  start_demo_server "$engine" "$db" "$port"
  TOKEN=$(demo_token "$port")
  curl -s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/fhir/Slot?status=free&start=gt$(date -u +%FT%TZ)&_count=1000" \
    | python3 -c 'import json,sys; [print(e["resource"]["id"]) for e in json.load(sys.stdin)["entry"]]' >"$WORK/slots-$engine.txt"
  : >"$WORK/seen-$engine.txt"; : >"$WORK/seen-$engine.txt.reads"
  python3 "$ROOT/bench/crash_client.py" "http://127.0.0.1:$port" "$TOKEN" "$WORK/slots-$engine.txt" \
    "$WORK/seen-$engine.txt" 64 >"$WORK/client-$engine.json" &
  local client=$!
  sleep "$KILL_AFTER"
  kill -9 "$SERVER"
  wait "$SERVER" 2>/dev/null || true
  SERVER=""
  wait "$client"
  start_demo_server "$engine" "$db" "$port"
  TOKEN=$(demo_token "$port")
  TOKEN=$TOKEN python3 "$ROOT/bench/booked_per_slot.py" "$port" >"$WORK/booked-$engine.json"
  local verified
  verified=$("$BIN/continuum" audit verify --database "$db" | tr '\n' ' ')
  TOKEN=$TOKEN python3 - "$port" "$WORK/seen-$engine.txt" "$WORK/client-$engine.json" "$engine" "$KILL_AFTER" "$WORK/booked-$engine.json" "$verified" >>"$OUT/summary.md" <<'PY'
import collections, json, os, sys, urllib.request
port, seen_file, client_file, engine, after, booked_file, verified = sys.argv[1:8]
token = os.environ["TOKEN"]
def get(path):
    req = urllib.request.Request(f"http://127.0.0.1:{port}/fhir/{path}", headers={"Authorization": f"Bearer {token}"})
    return json.load(urllib.request.urlopen(req))
seen = [l.split() for l in open(seen_file) if l.strip()]
missing = 0
for appointment, slot in seen:
    a = get(f"Appointment/{appointment}")
    if a.get("status") != "booked" or a["slot"][0]["reference"] != f"Slot/{slot}":
        missing += 1
booked = json.load(open(booked_file))
double = sum(1 for n in booked.values() if n > 1)
counts = json.load(open(client_file))
def audited(query):
    return get(f"AuditEvent?{query}&_summary=count")["total"]
unaudited_writes = sum(1 for appointment, _ in seen if audited(f"entity=Appointment/{appointment}") < 1)
reads = collections.Counter(l.strip() for l in open(seen_file + ".reads") if l.strip())
unaudited_reads = sum(max(0, n - audited(f"entity=Patient/{p}&subtype=read")) for p, n in reads.items())
print(f"| {engine} | {after} s | {counts['ok']} | {counts['conflict']} | {counts['cut']} | {len(seen) - missing} | **{missing}** | {sum(booked.values())} | **{double}** | {counts['reads']} | **{unaudited_writes}** / **{unaudited_reads}** | {verified.strip()} |")
PY
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
}

{
  echo "# Crash test (bookings and reads) $(date -u +%FT%TZ) on $(nproc) cores (SIGKILL after ${KILL_AFTER} s)"
  echo
  echo "| engine | killed after | confirmed (200) | refused (409) | connections cut | confirmed and found | confirmed but lost | booked in the database | double-booked | reads answered | answered without an AuditEvent (bookings / reads) | audit verify after restart |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
} >"$OUT/summary.md"
crash sqlite "sqlite://$WORK/crash.db"
continuum_start_postgres
psql "$CONTINUUM_TEST_POSTGRES_URL" -qc "CREATE DATABASE booking_crash_$$"
rm -f "$WORK/demo-client" "$WORK/continuum-demo-client"
crash postgres "${CONTINUUM_TEST_POSTGRES_URL%/*}/booking_crash_$$"
cat "$OUT/summary.md"
echo "results in $OUT"
