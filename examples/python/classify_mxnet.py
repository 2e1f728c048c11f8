"""Classifies a batch of images with an MXNet 1.x checkpoint, on MXNet 1.9.1.

One of two versions of the same application, classify_mxnet.py and classify_ward.py;
`diff -u` of the two shows what moving from MXNet to ward changes.

Usage: classify_mxnet.py MODEL_DIR IMAGES.npy
(MODEL_DIR holds model-symbol.json and model-0000.params; IMAGES.npy is N x 3 x 224 x 224
float32 in [0, 1].)

Run it with MXNET_SUBGRAPH_BACKEND=NONE: MXNet's default oneDNN subgraph pass computes
wrong numbers on some conv+BatchNorm graphs.
"""

import sys
from pathlib import Path

import mxnet as mx
import numpy as np

# ImageNet's per-channel mean and standard deviation.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32).reshape(1, 3, 1, 1)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32).reshape(1, 3, 1, 1)


def main():
    model_dir, images = Path(sys.argv[1]), np.load(sys.argv[2])
    batch = ((images - MEAN) / STD).astype(np.float32)

    sym, arg_params, aux_params = mx.model.load_checkpoint(str(model_dir / "model"), 0)
    model = mx.mod.Module(sym, label_names=None)
    model.bind(data_shapes=[("data", batch.shape)], for_training=False)
    model.set_params(arg_params, aux_params)
    model.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
    logits = model.get_outputs()[0].asnumpy()

    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = exp / exp.sum(axis=1, keepdims=True)
    for i, p in enumerate(probs):
        c = int(p.argmax())
        print(f"image {i}: class {c} (score {p[c]:.4f})")


if __name__ == "__main__":
    main()
