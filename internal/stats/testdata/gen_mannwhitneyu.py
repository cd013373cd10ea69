#!/usr/bin/python3
"""Generate mannwhitneyu_golden.json: scipy.stats.mannwhitneyu results for the Go tests.

Run with Debian's interpreter (it has python3-scipy; the python3 first on PATH may not):

    /usr/bin/python3 internal/stats/testdata/gen_mannwhitneyu.py > internal/stats/testdata/mannwhitneyu_golden.json

The output is deterministic (seeded), so TestGoldenIsCurrent re-runs this script and
requires a byte-identical result.
"""
import json
import sys

import numpy as np
import scipy
import scipy.stats._mannwhitneyu as mwu
from scipy.stats import mannwhitneyu

rng = np.random.default_rng(20240603)

# (n1, n2) pairs: exact territory (one side <= 8), the 8/9 boundary, large samples.
SIZES = [
    (1, 1), (1, 2), (2, 1), (1, 7), (3, 3), (2, 9), (4, 6), (5, 5), (6, 3), (7, 8),
    (8, 8), (8, 9), (9, 8), (9, 9), (3, 40), (40, 3), (8, 120), (1, 500), (500, 2),
    (10, 12), (15, 15), (20, 35), (50, 50), (100, 60), (200, 230), (500, 500), (500, 1),
    (12, 400), (300, 8), (33, 17),
]
ALTS = ["two-sided", "less", "greater"]


def sample(n, kind, shift):
    if kind == "continuous":
        return np.round(rng.normal(shift, 1.0, n), 12)
    if kind == "ties":  # few distinct values: many ties
        return np.floor(rng.normal(shift, 1.5, n)).astype(float) + 0.0
    if kind == "lognormal":  # latency-like, a few rounded ties
        return np.round(np.exp(rng.normal(shift, 0.5, n)), 2)
    raise ValueError(kind)


cases = []
for kind in ["continuous", "ties", "lognormal"]:
    for (n1, n2) in SIZES:
        shift = float(rng.choice([0.0, 0.3, 1.0]))
        x = sample(n1, kind, shift)
        y = sample(n2, kind, 0.0)
        for alt in ALTS:
            # A fresh cache per call: scipy's exact-distribution cache grows to the
            # largest (n1, n2, k) seen and would need gigabytes across these sizes.
            mwu._mwu_state = mwu._MWU()
            res = mannwhitneyu(x, y, alternative=alt, method="auto")
            xy = np.concatenate([x, y])
            ties = len(np.unique(xy)) != len(xy)
            method = "asymptotic" if (n1 > 8 and n2 > 8) or ties else "exact"
            cases.append({
                "name": f"{kind}/{n1}x{n2}/{alt}",
                "x": [float(v) for v in x],
                "y": [float(v) for v in y],
                "alternative": alt,
                "method": method,
                "U": float(res.statistic),
                "P": float(res.pvalue),
            })

json.dump({"generator": "internal/stats/testdata/gen_mannwhitneyu.py",
           "scipy": scipy.__version__, "cases": cases}, sys.stdout, indent=1)
sys.stdout.write("\n")
