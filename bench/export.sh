#!/usr/bin/env bash
# Bulk Data export (issue 22) on the 64,000-patient synthetic data set (bench/src/bin/synth.rs:
# patients, encounters, appointments, referrals, the directory — imported with `continuum
# import`), on SQLite and PostgreSQL, against the release binary: a system-level `$export` of
# every type as the backend client (every resource read through the caller's view, every type
# audited), timed from the kick-off to the manifest (resources/s written), then the files
# downloaded (MB/s); the server's resident memory before and its peak (VmHWM) after; a
# Patient/$export of the same data as a coordinator of one organisation (the access filter on
# every row). Median of RUNS exports per engine.
# Usage: bench/export.sh [--quick] [PATIENTS]   (--quick: 1 run; default 64000 patients;
#        ENGINES="sqlite postgres" by default)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RUNS=3
if [ "${1:-}" = "--quick" ]; then RUNS=1; shift; fi
N=${1:-64000}
OUT="$ROOT/bench/results/export-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
cargo build --release -q -p continuum -p bench
BIN="$ROOT/target/release"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
# shellcheck source=../scripts/lib/postgres.sh
source "$ROOT/scripts/lib/postgres.sh"
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; continuum_stop_postgres; }
trap cleanup EXIT
"$BIN/synth" --patients "$N" --seed 7 --out "$WORK/data.ndjson" 2>/dev/null
echo "# Bulk Data export, $N patients ($(wc -l <"$WORK/data.ndjson") resources), $(date -u +%FT%TZ), $(nproc) cores" | tee "$OUT/summary.md"
id_secret() { echo "$1" | sed -n 's/^client_id: //p' | tr -d '\n'; echo -n ":"; echo "$1" | sed -n 's/^client_secret: //p'; }
rss_kb() { sed -n "s/^$1:\s*\([0-9]*\) kB/\1/p" "/proc/$SERVER/status"; }

# export PORT TOKEN PATH → prints "resources seconds files_bytes download_seconds"
export_once() {
  python3 - "$1" "$2" "$3" "$WORK/files" <<'PY'
import json, os, sys, time, urllib.request
port, token, path, folder = sys.argv[1:5]
base = f"http://127.0.0.1:{port}/fhir"
h = {"Authorization": f"Bearer {token}", "Prefer": "respond-async", "Accept": "application/fhir+json"}
t0 = time.time()
r = urllib.request.urlopen(urllib.request.Request(base + path, headers=h))
assert r.status == 202, r.status
status = r.headers["Content-Location"]
while True:
    r = urllib.request.urlopen(urllib.request.Request(status, headers={"Authorization": h["Authorization"]}))
    if r.status == 200:
        manifest = json.load(r)
        break
    time.sleep(0.1)
t1 = time.time()
n = sum(o["count"] for o in manifest["output"])
os.makedirs(folder, exist_ok=True)
size = 0
for o in manifest["output"]:
    r = urllib.request.urlopen(urllib.request.Request(o["url"], headers={"Authorization": h["Authorization"]}))
    with open(os.path.join(folder, os.path.basename(o["url"])), "wb") as f:
        while True:
            b = r.read(1 << 20)
            if not b:
                break
            size += len(b)
            f.write(b)
t2 = time.time()
urllib.request.urlopen(urllib.request.Request(status, method="DELETE", headers={"Authorization": h["Authorization"]}))
print(n, f"{t1 - t0:.2f}", size, f"{t2 - t1:.2f}")
PY
}

for engine in ${ENGINES:-sqlite postgres}; do
  if [ "$engine" = sqlite ]; then DB="sqlite://$WORK/export.db"; else
    continuum_start_postgres
    name="bench_export_$$"; psql "$CONTINUUM_TEST_POSTGRES_URL" -qc "CREATE DATABASE $name"; DB="${CONTINUUM_TEST_POSTGRES_URL%/*}/$name"
  fi
  "$BIN/continuum" import --database "$DB" "$WORK/data.ndjson" >"$OUT/import-$engine.txt" 2>&1
  admin=$(id_secret "$("$BIN/continuum" clients add --database "$DB" --name bench --scope 'system/*.rs')")
  coord=$(id_secret "$("$BIN/continuum" clients add --database "$DB" --name coordinator --scope 'user/*.rs' --role coordinator@hhc)")
  PORT=$(free_port)
  CONTINUUM_LOG=warn CONTINUUM_EXPORT_DIR="$WORK/exports-$engine" \
    "$BIN/continuum" serve --listen "127.0.0.1:$PORT" --database "$DB" >"$OUT/server-$engine.log" 2>&1 &
  SERVER=$!
  for _ in $(seq 1 600); do curl -fs "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  tok() { curl -s -u "$1" -d grant_type=client_credentials "http://127.0.0.1:$PORT/auth/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'; }
  sleep 30   # the start-up jobs (slot generation, the transition scheduler, the identity model) first
  before=$(rss_kb VmRSS)
  echo 5 >"/proc/$SERVER/clear_refs"   # the peak from here on: the exports' own
  for _ in $(seq 1 "$RUNS"); do export_once "$PORT" "$(tok "$admin")" '/$export' >>"$OUT/system-$engine.txt"; done
  export_once "$PORT" "$(tok "$coord")" '/Patient/$export' >>"$OUT/coordinator-$engine.txt"
  peak=$(rss_kb VmHWM)
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=""
  python3 - "$engine" "$OUT/system-$engine.txt" "$OUT/coordinator-$engine.txt" "$before" "$peak" <<'PY' | tee -a "$OUT/summary.md"
import statistics, sys
engine, system, coord, before, peak = sys.argv[1:6]
rows = [l.split() for l in open(system)]
n = int(rows[0][0])
secs = statistics.median(float(r[1]) for r in rows)
size = int(rows[0][2]); dl = statistics.median(float(r[3]) for r in rows)
c = open(coord).read().split()
print(f"- {engine}: system $export of {n} resources in {secs:.1f} s = {n / secs:,.0f} resources/s (median of {len(rows)}); "
      f"{size / 1e6:.0f} MB of NDJSON downloaded at {size / 1e6 / dl:.0f} MB/s; a coordinator's Patient/$export: {int(c[0])} resources in {float(c[1]):.1f} s; "
      f"server memory {int(before) / 1024:.0f} MB before the exports, peak {int(peak) / 1024:.0f} MB during them")
PY
done
echo "results in $OUT"
