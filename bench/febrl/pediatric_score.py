#!/usr/bin/env python3
"""Scores `continuum link` output on the synthetic pediatric set: precision, recall and F1
against the true pairs, and how many twin pairs (different children) were linked.
Usage: pediatric_score.py TRUTH.csv TWINS.csv PRED.csv [--tool NAME]"""
import csv, json, sys

def pairs(path):
    with open(path) as f:
        rows = list(csv.reader(f))[1:]
    return {tuple(sorted((r[0].strip(), r[1].strip()))) for r in rows if len(r) >= 2}

truth, twins, pred = (pairs(p) for p in sys.argv[1:4])
tool = sys.argv[sys.argv.index("--tool") + 1] if "--tool" in sys.argv else "continuum"
tp = len(pred & truth)
precision = tp / len(pred) if pred else 0.0
recall = tp / len(truth) if truth else 0.0
f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
print(json.dumps({"tool": tool, "links": len(pred), "tp": tp, "fp": len(pred) - tp,
                  "fn": len(truth) - tp, "precision": round(precision, 6), "recall": round(recall, 6),
                  "f1": round(f1, 6), "twin_pairs": len(twins), "twins_linked": len(pred & twins)}))
