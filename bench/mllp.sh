#!/usr/bin/env bash
# HL7 v2 over MLLP (issue 21): ADT messages per second sustained and the ACK latency (p50/p99),
# on one connection and on several, on SQLite and (with CONTINUUM_TEST_POSTGRES_URL) PostgreSQL.
# The release server with `--mllp`, 1,000 patients with a care team (each admission alerts its
# practitioner) imported first; every message applied (A01 → A08 → A03 per visit: an Encounter
# created, updated, finished, each with its Provenance, the alerts of A01 and A03 written).
# The start-up jobs are left to finish (10 s) and 1,500 messages warm it up before each engine's
# three runs.
# Usage: bench/mllp.sh [MESSAGES]   (default 6000 per run)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${1:-6000}
OUT="$ROOT/bench/results/mllp-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
cargo build --release -q -p continuum -p bench
BIN="$ROOT/target/release/continuum"
LOAD="$ROOT/target/release/mllp_load"
WORK=$(mktemp -d)
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$WORK"' EXIT
python3 - "$WORK/people.ndjson" <<'PY'
import json, sys
out = open(sys.argv[1], "w")
w = lambda r: out.write(json.dumps(r) + "\n")
w({"resourceType": "Organization", "id": "bh", "name": "Bench Hospital",
   "identifier": [{"system": "http://continuum-alliance.org/fhir/NamingSystem/hl7-facility", "value": "BH"}]})
w({"resourceType": "Organization", "id": "bp", "name": "Bench Practice"})
w({"resourceType": "Practitioner", "id": "bdr", "name": [{"family": "Doctor"}]})
w({"resourceType": "PractitionerRole", "id": "bdr-role", "practitioner": {"reference": "Practitioner/bdr"},
   "organization": {"reference": "Organization/bp"}})
for n in range(1000):
    w({"resourceType": "Patient", "id": f"b{n}", "identifier": [{"system": "urn:mrn:bh", "value": f"B{n}"}],
       "name": [{"family": "Bench", "given": [f"Pat{n}"]}], "birthDate": "2012-01-01", "gender": "female",
       "managingOrganization": {"reference": "Organization/bp"}})
    w({"resourceType": "CareTeam", "id": f"bt{n}", "status": "active", "subject": {"reference": f"Patient/b{n}"},
       "participant": [{"member": {"reference": "Practitioner/bdr"}}]})
PY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
bench() { # LABEL DATABASE
  local port mport
  port=$(free_port); mport=$(free_port)
  "$BIN" import --database "$2" "$WORK/people.ndjson" >/dev/null 2>&1
  CONTINUUM_LOG=warn CONTINUUM_ADMIN_PASSWORD="a bench administrator passphrase" \
    "$BIN" serve --database "$2" --listen "127.0.0.1:$port" --mllp "127.0.0.1:$mport" >"$WORK/server.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 300); do curl -sf "127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  # the jobs a start runs (the identity model, the transition scheduler over the 1,000 young
  # patients) finish first; then a warm-up
  sleep 10
  "$LOAD" "127.0.0.1:$mport" 1500 4 1000 warm >/dev/null
  for c in 1 4 16; do
    echo "$1, $c connection(s): $("$LOAD" "127.0.0.1:$mport" "$N" "$c" 1000 "c$c")" | tee -a "$OUT/summary.txt"
  done
  kill $SERVER; wait $SERVER 2>/dev/null || true
}
bench SQLite "sqlite://$WORK/mllp.db"
if [ -n "${CONTINUUM_TEST_POSTGRES_URL:-}" ]; then
  DBN="continuum_mllp_bench_$$"
  psql "$CONTINUUM_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DBN" -c "CREATE DATABASE $DBN"
  bench PostgreSQL "${CONTINUUM_TEST_POSTGRES_URL%/*}/$DBN"
  psql "$CONTINUUM_TEST_POSTGRES_URL" -qc "DROP DATABASE IF EXISTS $DBN WITH (FORCE)"
fi
echo "results in $OUT"
