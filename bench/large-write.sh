#!/usr/bin/env bash
# A large write beside small ones (issue 16): against `serve --demo` on SQLite, the largest
# resources the server takes (10,000 identifiers; 10,000 names of ~1 KB, 10 MB) are created
# while a second client keeps creating small Observations; the large write's time and the small
# writes' latency while it runs (the single writer must not hold them for long), then refused
# ones (100,000 identifiers: 422) and their time. Usage: bench/large-write.sh
# Results: bench/results/large-write-<date>/
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
OUT="$ROOT/bench/results/large-write-$(date -u +%Y%m%dT%H%M%SZ)"
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
start_demo_server sqlite "sqlite://$WORK/large.db" "$PORT"
TOKEN=$(demo_token "$PORT")
python3 "$ROOT/bench/large_write.py" "$PORT" "$TOKEN" | tee "$OUT/summary.md"
echo "results in $OUT"
