"""Classifies a batch of images with an MXNet 1.x checkpoint, on ward.

One of two versions of the same application, classify_mxnet.py and classify_ward.py;
`diff -u` of the two shows what moving from MXNet to ward changes.

Usage: classify_ward.py MODEL_DIR IMAGES.npy
(MODEL_DIR holds model-symbol.json and model-0000.params; IMAGES.npy is N x 3 x 224 x 224
float32 in [0, 1].)
"""

import json
import sys
from pathlib import Path

import numpy as np
import ward

# ImageNet's per-channel mean and standard deviation.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def main():
    model_dir, images = Path(sys.argv[1]), np.load(sys.argv[2])
    batch = ((images - MEAN) / STD).astype(np.float32)

    # The SHA-256 digests recorded when the model shipped, kept with the application rather
    # than next to the model files (whoever could swap those could swap the pins too).
    pins = json.loads(Path(__file__).with_name("pins.json").read_text())
    model = ward.mxnet.load(
        model_dir / "model-symbol.json",
        model_dir / "model-0000.params",
        inputs={"data": ("float32", (-1, 3, 224, 224))},
        sha256=pins,
    )
    logits = list(model.predict(data=batch).values())[0]

    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    for i, p in enumerate(probs):
        c = int(p.argmax())
        print(f"image {i}: class {c} (score {p[c]:.4f})")


if __name__ == "__main__":
    main()
