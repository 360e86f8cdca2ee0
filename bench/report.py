#!/usr/bin/env python3
"""Turns one `bench/run.sh` results directory into the Markdown tables of bench/README.md:
every figure as the median of its runs, beside its target and the SQLite ceiling.

Usage: python3 bench/report.py bench/results/<run>
"""
import pathlib
import re
import statistics
import sys

d = pathlib.Path(sys.argv[1])


def runs(name):
    f = d / f"{name}.txt"
    if not f.exists():
        return []
    return [line.split() for line in f.read_text().splitlines() if line.strip()]


def med(values):
    return statistics.median(values) if values else float("nan")


def wrk(name):
    r = runs(name)
    return (
        med([float(x[0]) for x in r]),
        med([float(x[1]) for x in r]),
        med([float(x[2]) for x in r]),
        len(r),
    )


def rate(name):
    r = runs(name)
    return med([float(x[0]) for x in r]), len(r)


ceil = [
    [float(v) for v in re.findall(r"\) (\d+)|reads/s \(2 threads\) (\d+)", line) for v in v if v]
    for line in (d / "ceiling.txt").read_text().splitlines()
    if line.strip()
]
ceil_insert = med([c[0] for c in ceil])
ceil_bulk = med([c[1] for c in ceil])
ceil_read = med([c[2] for c in ceil])

print("| figure | target | measured (median) | runs | verdict |")
print("|---|---|---|---|---|")


def row(figure, target, measured, n, ok):
    verdict = "—" if ok is None else "met" if ok else "**missed**"
    print(f"| {figure} | {target} | {measured} | {n} | {verdict} |")


for size in (1000, 64000, 8000):
    rps, p50, p99, n = wrk(f"crud-sqlite-{size}")
    if n:
        row(f"CRUD mix, SQLite, {size:,} patients", "≥ 5,000 req/s, p99 ≤ 20 ms",
            f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms", n, rps >= 5000 and p99 <= 20)
small = wrk("search-sqlite-1000")
for size in (1000, 64000, 8000):
    rps, p50, p99, n = wrk(f"search-sqlite-{size}")
    if n:
        row(f"search mix, SQLite, {size:,} patients", "≥ 4,000 req/s, p99 ≤ 25 ms",
            f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms", n, rps >= 4000 and p99 <= 25)
for size in (64000, 8000):
    big = wrk(f"search-sqlite-{size}")
    if big[3] and small[3]:
        g = big[1] / small[1]
        row(f"search mix p50 growth 1,000 → {size:,} patients", "≤ 1.3×", f"{g:.2f}×", min(big[3], small[3]), g <= 1.3)
for size in (1000, 64000, 8000):
    r, n = rate(f"import-sqlite-{size}")
    if n:
        row(f"`continuum import` NDJSON, SQLite, {size:,} patients", "≥ 20,000 resources/s", f"{r:,.0f} resources/s", n, r >= 20000)
rps, p50, p99, n = wrk("bundle-sqlite")
row("100-entry transaction Bundles over HTTP, SQLite", "≥ 10,000 resources/s",
    f"{rps * 100:,.0f} resources/s ({rps:.1f} Bundles/s, p50 {p50:.0f} ms)", n, rps * 100 >= 10000)
rps, p50, p99, n = wrk("crud-postgres-1000")
row("CRUD mix, PostgreSQL, 1,000 patients", "(reported)", f"{rps:,.0f} req/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms", n, None)
r, n = rate("import-postgres-1000")
row("`continuum import`, PostgreSQL, 1,000 patients", "(reported)", f"{r:,.0f} resources/s", n, None)
rps, p50, p99, n = wrk("bundle-postgres")
row("100-entry Bundles over HTTP, PostgreSQL", "(reported)", f"{rps * 100:,.0f} resources/s", n, None)

print()
print("| side by side with the raw SQLite ceiling | Continuum | ceiling | Continuum ÷ ceiling (target ≥ 0.5) |")
print("|---|---|---|---|")
rps, p50, p99, n = wrk("read-sqlite-1000")
print(f"| point reads (`GET Patient/id` over HTTP vs `SELECT` by type and id, 2 threads) | {rps:,.0f}/s | {ceil_read:,.0f}/s | {rps / ceil_read:.3f} |")
rps, p50, p99, n = wrk("create-sqlite-1000")
print(f"| creates (`POST Patient` over HTTP vs one INSERT per transaction) | {rps:,.0f}/s | {ceil_insert:,.0f}/s | {rps / ceil_insert:.3f} |")
r, n = rate("import-sqlite-1000")
print(f"| bulk creates (`continuum import` vs 1,000 INSERTs per transaction) | {r:,.0f}/s | {ceil_bulk:,.0f}/s | {r / ceil_bulk:.3f} |")
