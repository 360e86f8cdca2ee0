#!/usr/bin/env bash
# The newborn day (issue 14): 2,000 Patient creates with one birth date and placeholder given
# names from one client, then 2,000 more from 32 clients, against `serve --demo` on SQLite,
# with a reader interleaved; the create rate over the last 250 against the first 250, and the
# reader's p99. Usage: bench/newborn.sh [--creates N]   Results: bench/results/newborn-<date>/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/results/newborn-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
cargo build --release -q -p continuum
BIN="$ROOT/target/release"
# shellcheck source=lib.sh
source "$ROOT/bench/lib.sh"
WORK=$(mktemp -d)
SERVER=""
cleanup() { [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
PORT=$(free_port)
start_demo_server sqlite "sqlite://$WORK/newborn.db" "$PORT"
TOKEN=$(demo_token "$PORT")
python3 "$ROOT/bench/newborn.py" "$PORT" "$TOKEN" "$@" | tee "$OUT/phases.jsonl"
python3 - "$OUT/phases.jsonl" >"$OUT/summary.md" <<'PY'
import json, sys
print("| phase | creates | errors | first 250 (creates/s) | last 250 (creates/s) | last / first | reads | read p50 | read p99 |")
print("|---|---|---|---|---|---|---|---|---|")
for line in open(sys.argv[1]):
    r = json.loads(line)
    print(f"| {r['phase']} | {r['creates']} | {r['errors']} | {r['first_250_per_s']:.0f} | {r['last_250_per_s']:.0f} | **{r['ratio']:.2f}** | {r['reads']} | {r['read_p50_ms']:.1f} ms | **{r['read_p99_ms']:.1f} ms** |")
PY
cat "$OUT/summary.md"
echo "results in $OUT"
