"""Writes the examples' input batch: two 3x224x224 float32 images in [0, 1].

They are noise from a fixed seed, made at run time rather than committed (1.2 MB of
random floats would not compress); numpy's default_rng(0) gives the same bytes under
MXNet's numpy 1.23 and numpy 2.

Usage: make_images.py OUT.npy
"""

import sys

import numpy as np

images = np.random.default_rng(0).random((2, 3, 224, 224), dtype=np.float32)
np.save(sys.argv[1], images)
