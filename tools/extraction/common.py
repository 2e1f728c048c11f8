"""Shared helpers of the extraction tools (standard library + numpy only)."""

import csv
import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "extraction")
DATA_CSV = os.path.join(FIXTURES, "gmm5.csv")
MODEL_DIR = os.path.join(FIXTURES, "softmax")


def load_csv(path=DATA_CSV):
    """Returns {"train": (X, y), "test": (X, y)} with X float64 (n, d) and y int64 (n,)."""
    parts = {"train": ([], []), "test": ([], [])}
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        if header[:2] != ["split", "label"]:
            raise ValueError(f"{path}: unexpected header {header[:2]}")
        for row in reader:
            xs, ys = parts[row[0]]
            ys.append(int(row[1]))
            xs.append([float(v) for v in row[2:]])
    return {k: (np.array(xs, dtype=np.float64), np.array(ys, dtype=np.int64)) for k, (xs, ys) in parts.items()}


def softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class Truth:
    """The true model, read from a fixture directory written by train.py."""

    def __init__(self, model_dir=MODEL_DIR):
        self.weight = np.load(os.path.join(model_dir, "true-weight.npy"))  # (k, d) float32
        self.bias = np.load(os.path.join(model_dir, "true-bias.npy"))  # (k,) float32
        with open(os.path.join(model_dir, "meta.json")) as f:
            self.meta = json.load(f)
        self.k, self.d = self.weight.shape
        self.feature_min = np.array(self.meta["feature_min"], dtype=np.float64)
        self.feature_max = np.array(self.meta["feature_max"], dtype=np.float64)

    def proba32(self, x):
        """What an f32 runtime computes: FullyConnected then softmax, in float32."""
        x = np.asarray(x, dtype=np.float32)
        z = x @ self.weight.T + self.bias
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def proba(self, x):
        """The same model in float64 (the reference for agreement figures)."""
        return softmax(np.asarray(x, dtype=np.float64) @ self.weight.T.astype(np.float64) + self.bias.astype(np.float64))
