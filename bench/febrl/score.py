#!/usr/bin/env python3
"""Score predicted links against true links.

Usage: score.py TRUTH PRED [--min-score X] [--tool NAME] [--twins TWINS]

TRUTH: CSV with header left_id,right_id (e.g. febrl4_true_links.csv).
PRED:  CSV with header left_id,right_id[,score[,grade]] (extra columns ignored
       unless --min-score is given, which keeps rows with score >= X).

Pairs are compared unordered ({a,b} == {b,a}), so the same scorer serves the
A x B link task (FEBRL4, where A and B ids are disjoint) and the dedupe sets
(FEBRL1-3, where the truth lists each pair once with left < right).  Duplicate
predicted pairs are counted once; self-pairs (a,a) are ignored.
Prints one JSON line: {"tool", "pred", "links", "tp", "fp", "fn", "precision",
"recall", "f1"}; with --twins (a CSV of pairs that must never link, such as the
pediatric set's twins), also "twin_pairs" and "twins_linked".
"""
import argparse
import csv
import json
import sys


def read_pairs(path, min_score=None):
    pairs = set()
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        if not r.fieldnames or "left_id" not in r.fieldnames or "right_id" not in r.fieldnames:
            raise SystemExit(f"{path}: header must start with left_id,right_id")
        if min_score is not None and "score" not in r.fieldnames:
            raise SystemExit(f"{path}: --min-score needs a score column")
        for row in r:
            a, b = row["left_id"].strip(), row["right_id"].strip()
            if not a or not b or a == b:
                continue
            if min_score is not None and float(row["score"]) < min_score:
                continue
            pairs.add((a, b) if a <= b else (b, a))
    return pairs


def metrics(truth, pred):
    """truth, pred: sets of unordered (sorted) id pairs."""
    tp = len(truth & pred)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(truth) if truth else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "links": len(pred), "tp": tp, "fp": len(pred) - tp, "fn": len(truth) - tp,
        "precision": round(precision, 6), "recall": round(recall, 6), "f1": round(f1, 6),
    }


def canon(pairs):
    return {(a, b) if a <= b else (b, a) for a, b in pairs if a != b}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("truth")
    p.add_argument("pred")
    p.add_argument("--min-score", type=float, default=None)
    p.add_argument("--tool", default=None)
    p.add_argument("--twins", default=None)
    a = p.parse_args(argv)
    truth = read_pairs(a.truth)
    pred = read_pairs(a.pred, a.min_score)
    out = {"tool": a.tool, "pred": a.pred}
    if a.min_score is not None:
        out["min_score"] = a.min_score
    out.update(metrics(truth, pred))
    if a.twins:
        twins = read_pairs(a.twins)
        out.update({"twin_pairs": len(twins), "twins_linked": len(pred & twins)})
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
