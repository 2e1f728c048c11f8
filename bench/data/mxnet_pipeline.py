#!/usr/bin/env python3
"""The data pipeline alone: MXNet 1.9.1's ImageRecordIter decoding and augmenting JPEG
records (resize the shorter side to 256, random 224x224 crop, random mirror, mean/std),
against which ward's Loader is timed by bench/data/run.sh.

    mxnet_pipeline.py make DIR            # DIR/images.rec + .idx: 1,000 JPEG records
    mxnet_pipeline.py time DIR THREADS    # one JSON line: images/s over 2 epochs

The images are synthetic but photograph-like for a JPEG decoder: smooth colour gradients,
shapes and noise, 320x240 to 500x375 (ImageNet's typical sizes), quality 90, packed by
MXNet's own writer (mx.recordio.pack_img, OpenCV). Needs cv2 beside MXNet
(tools/make_data_fixtures.py says how).
"""
import json
import os
import sys
import time

import numpy as np
import mxnet as mx

COUNT = 1000
BATCH = 32
EPOCHS = 2
MEAN = (123.68, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)


def make(out):
    import cv2
    os.makedirs(out, exist_ok=True)
    rng = np.random.RandomState(0)
    rec = mx.recordio.MXIndexedRecordIO(os.path.join(out, "images.idx"),
                                        os.path.join(out, "images.rec"), "w")
    sizes = [(320, 240), (500, 375), (400, 300), (375, 500), (480, 360)]
    for i in range(COUNT):
        w, h = sizes[i % len(sizes)]
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        img = np.stack([
            127 + 120 * np.sin(x / (20 + 7 * c) + y / (31 + 5 * c) + rng.rand() * 6)
            for c in range(3)], axis=-1)
        for _ in range(6):
            cx, cy, r = rng.randint(0, w), rng.randint(0, h), rng.randint(10, 80)
            cv2.circle(img, (cx, cy), r, tuple(float(v) for v in rng.randint(0, 255, 3)), -1)
        img += rng.normal(0, 12, img.shape)
        img = np.clip(img, 0, 255).astype(np.uint8)
        header = mx.recordio.IRHeader(0, float(i % 1000), i, 0)
        rec.write_idx(i, mx.recordio.pack_img(header, img, quality=90, img_fmt=".jpg"))
    rec.close()


def time_it(out, threads):
    it = mx.io.ImageRecordIter(
        path_imgrec=os.path.join(out, "images.rec"), path_imgidx=os.path.join(out, "images.idx"),
        data_shape=(3, 224, 224), batch_size=BATCH, resize=256, rand_crop=True,
        rand_mirror=True, shuffle=True, seed=1, preprocess_threads=threads,
        mean_r=MEAN[0], mean_g=MEAN[1], mean_b=MEAN[2],
        std_r=STD[0], std_g=STD[1], std_b=STD[2], prefetch_buffer=4)
    # One untimed pass warms the page cache and the iterator's threads.
    for _ in it:
        pass
    images = 0
    start = time.perf_counter()
    for _ in range(EPOCHS):
        it.reset()
        for batch in it:
            batch.data[0].wait_to_read()
            images += BATCH - batch.pad
    elapsed = time.perf_counter() - start
    print(json.dumps({"images": images, "seconds": elapsed, "images_per_s": images / elapsed}))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        time_it(sys.argv[2], int(sys.argv[3]))
