#!/usr/bin/env bash
# The console's pages (issue 19) on the demo (`serve --demo`, SQLite, release build): each page
# signed in as the demo user who uses it — the worklist and a referral (coordinator), the care
# finder with its options and map data (coordinator), a patient's page (coordinator), the
# family's page (parent), the directory (administrator) — with wrk at concurrency 1 and 8 for
# 10 s, p50/p99 and req/s (every page is one unit of work and one AuditEvent).
# Usage: bench/console.sh [--quick]   (--quick: 5 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DURATION=10
if [ "${1:-}" = "--quick" ]; then DURATION=5; shift; fi
OUT="$ROOT/bench/results/console-$(date -u +%Y%m%dT%H%M%SZ)"
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
PORT=$(free_port)
start_demo_server sqlite "sqlite://$WORK/continuum.db" "$PORT"
BASE="http://127.0.0.1:$PORT"
sleep 30   # the start-up jobs (slot generation, the identity model, the first deliveries) finish first
# a session cookie for a demo user (the sign-in form, as a browser)
session() {
  local jar pw csrf
  jar=$(mktemp)
  pw=$(awk -v u="$1" '$1==u {print $2}' "$WORK/demo-users")
  csrf=$(curl -s -c "$jar" "$BASE/login" | sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' | head -1)
  curl -s -b "$jar" -c "$jar" -o /dev/null --data-urlencode "username=$1" --data-urlencode "password=$pw" --data-urlencode "csrf=$csrf" "$BASE/login"
  awk '$6=="continuum_session" {print "continuum_session=" $7}' "$jar"
}
COORD=$(session coordinator); PARENT=$(session parent); ADMIN=$(session demo-admin)
TASK=$(curl -s -H "Cookie: $COORD" "$BASE/worklist?state=open" | grep -o 'href="/referrals/[^"]*"' | head -1 | sed 's/href="\/referrals\///; s/"//')
# name|cookie|path|what the page must show (so a page answering an error is not timed)
PAGES=(
  "worklist|$COORD|/worklist?state=open|<table class=\"stack\">"
  "referral|$COORD|/referrals/$TASK|id=\"referral-status\""
  "find-care|$COORD|/find-care?patient=demo-nora&service=pediatric+cardiology&modality=any|id=\"option-1\""
  "patient|$COORD|/patients/demo-nora|Demographics"
  "family|$PARENT|/family|Nora Reyes"
  "directory|$ADMIN|/admin|Add a clinic site"
)
for p in "${PAGES[@]}"; do
  IFS='|' read -r name cookie path marker <<<"$p"
  page=$(curl -s -w '\n%{http_code}' -H "Cookie: $cookie" "$BASE$path")
  [ "$(echo "$page" | tail -1)" = 200 ] || { echo "$name answered $(echo "$page" | tail -1)" >&2; exit 1; }
  grep -qF "$marker" <<<"$page" || { echo "$name does not show '$marker'" >&2; exit 1; }
  wrk -t1 -c2 -d3s -H "Cookie: $cookie" "$BASE$path" >/dev/null 2>&1   # warm-up
  for c in 1 8; do
    raw=$(wrk -t$(( c > 1 ? 2 : 1 )) -c$c -d"${DURATION}s" --latency -H "Cookie: $cookie" "$BASE$path" 2>&1)
    echo "$raw" >>"$OUT/$name-c$c.raw"
    wrk_line "$raw" >"$OUT/$name-c$c.txt"
  done
done
{
  echo "# Console pages on the demo, $(date -u +%FT%TZ), $(nproc) cores, ${DURATION} s each"
  echo
  echo "| page | c1 req/s | c1 p50 | c1 p99 | c8 req/s | c8 p50 | c8 p99 | non-2xx |"
  echo "|---|---|---|---|---|---|---|---|"
  for p in "${PAGES[@]}"; do
    IFS='|' read -r name _ _ _ <<<"$p"
    read -r r1 p50a p99a n1 <"$OUT/$name-c1.txt"
    read -r r8 p50b p99b n8 <"$OUT/$name-c8.txt"
    echo "| $name | $r1 | $p50a ms | $p99a ms | $r8 | $p50b ms | $p99b ms | $((n1 + n8)) |"
  done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
echo "results in $OUT"
