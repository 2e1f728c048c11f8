#!/usr/bin/env python3
"""Generate the bundled data set of the model-extraction test.

    python3 tools/extraction/make_data.py      # any Python 3 with numpy

Writes tests/fixtures/extraction/gmm5.csv: a 5-class Gaussian mixture in 20
dimensions, 300 training rows and 150 test rows, with a fixed seed.  Columns:
`split` (train/test), `label` (0..4), `x0` .. `x19` (3 decimals).

Each class is a mixture of two Gaussian blobs (so a linear model cannot be
perfect) whose centres are drawn around a class centre; within-blob noise is
isotropic N(0, 1).  The numbers are written with 3 decimals and the training
script reads the CSV back, so the committed file (not the RNG) is the data set.
"""

import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "extraction", "gmm5.csv")

SEED = 20160913  # the Tramèr et al. arXiv date, as good as any
CLASSES = 5
FEATURES = 20
TRAIN_PER_CLASS = 60
TEST_PER_CLASS = 30


def main():
    rng = np.random.default_rng(SEED)
    class_centres = rng.normal(0.0, 0.75, size=(CLASSES, FEATURES))
    blob_offsets = rng.normal(0.0, 0.5, size=(CLASSES, 2, FEATURES))
    rows = []
    for split, per_class in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
        for c in range(CLASSES):
            blob = rng.integers(0, 2, size=per_class)
            x = class_centres[c] + blob_offsets[c, blob] + rng.normal(0.0, 1.0, size=(per_class, FEATURES))
            for row in x:
                rows.append((split, c, row))
    # Interleave the classes within each split in a fixed shuffled order.
    order_train = rng.permutation(CLASSES * TRAIN_PER_CLASS)
    order_test = CLASSES * TRAIN_PER_CLASS + rng.permutation(CLASSES * TEST_PER_CLASS)
    rows = [rows[i] for i in np.concatenate([order_train, order_test])]

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", newline="\n") as f:
        f.write("split,label," + ",".join(f"x{j}" for j in range(FEATURES)) + "\n")
        for split, label, row in rows:
            # "%.3f" of -0.0004 is "-0.000": normalise negative zeros so the file is tidy.
            vals = ["0.000" if v == "-0.000" else v for v in (f"{x:.3f}" for x in row)]
            f.write(f"{split},{label}," + ",".join(vals) + "\n")
    print(f"wrote {os.path.relpath(OUT, ROOT)}: {len(rows)} rows, {os.path.getsize(OUT)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
