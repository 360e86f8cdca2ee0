#!/usr/bin/env bash
# The transition scheduler (issue 20) over N synthetic young people (default 100,000:
# bench/transition.py — aged 12–26 on the as-of day, four organisations, a realistic share of
# elements already recorded), imported with `continuum import` into SQLite: the first
# `continuum transition run --as-of DAY` (wall time, element Tasks written, rows added), a
# second run the same day (wall time; it must write nothing: the same row counts), and a run a
# month later (what a month's ageing changes).
# Usage: bench/transition.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
N=${1:-100000}
AS_OF=2026-12-01
OUT="$ROOT/bench/results/transition-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
cargo build --release -q -p continuum
BIN="$ROOT/target/release/continuum"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
DB="sqlite://$WORK/transition.db"
python3 "$ROOT/bench/transition.py" "$N" "$AS_OF" "$WORK/young.ndjson"
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$2"; }
t0=$(date +%s.%N)
"$BIN" import --database "$DB" "$WORK/young.ndjson" >"$OUT/import.txt" 2>&1
echo "import of $N young people ($(wc -l <"$WORK/young.ndjson") resources): $(secs "$t0" "$(date +%s.%N)") s" | tee -a "$OUT/summary.txt"
rows() { python3 - "$WORK/transition.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
print(" ".join(f"{t}={c.execute(f'SELECT count(*) FROM {t}').fetchone()[0]}" for t in ["resources", "history", "idx_token", "outbox"]))
PY
}
run() { # LABEL DAY
  local before after t0 t1 said
  before=$(rows)
  t0=$(date +%s.%N)
  said=$(CONTINUUM_LOG=warn "$BIN" transition run --database "$DB" --as-of "$2")
  t1=$(date +%s.%N)
  after=$(rows)
  echo "$1 (as of $2): $(secs "$t0" "$t1") s — $said" | tee -a "$OUT/summary.txt"
  echo "  rows before: $before" | tee -a "$OUT/summary.txt"
  echo "  rows after:  $after" | tee -a "$OUT/summary.txt"
}
run "first run" "$AS_OF"
run "second run" "$AS_OF"
run "a month later" 2027-01-01
echo "results in $OUT"
