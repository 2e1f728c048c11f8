#!/usr/bin/env python3
"""Reference Shapiro-Wilk W statistics (scipy.stats.shapiro, scipy 1.10.1) for the vectors
that crates/ward-serve/src/extraction.rs tests its own W against. Each vector is a formula,
so the Rust test builds the same numbers without a data file.

    .venv-mx/bin/pip install scipy==1.10.1 && .venv-mx/bin/python tools/extraction/shapiro_reference.py
"""
import math

from scipy import stats


def vectors():
    yield "normal quantiles, n=50", [stats.norm.ppf((i + 0.5) / 50) for i in range(50)]
    yield "0..100", [float(i) for i in range(100)]
    yield "exponential quantiles, n=200", [-math.log(1 - (i + 0.5) / 200) for i in range(200)]
    yield "two clusters, n=60", [0.01 * i for i in range(30)] + [10 + 0.01 * i for i in range(30)]
    yield "squares mod 1009, n=1000", [float(((i * 7919) % 1009) ** 2) for i in range(1000)]
    yield "n=12", [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0]


for name, x in vectors():
    print(f"{name}: W = {stats.shapiro(x).statistic:.10f}")
