#!/usr/bin/env python3
"""MXNet's second opinions on the detection heads: references from its other CPU backend,
and with ROIAlign's stale rows zeroed.

Run with the zoo virtual environment from the repository root, after `export_zoo.py`:

    .venv-zoo/bin/python tools/zoo/alt_references.py                 # every detection head
    .venv-zoo/bin/python tools/zoo/alt_references.py --only '*fpn*'  # some (fnmatch)

Why this exists. A detection head turns scores into decisions: it sorts them, keeps the
top k, suppresses overlapping boxes, and samples regions whose size sets how many points
ROIAlign reads. With random weights thousands of scores lie within float noise of each
other, so a last-bit difference anywhere upstream can change a decision, and one
changed decision moves whole rows. Two questions decide whether such a model's
difference from MXNet is ward's fault, and this tool records MXNet's own answers:

* **Does MXNet agree with itself?** The exporter's references come from MXNet's default
  CPU kernels (oneDNN's convolutions and softmax). MXNet also has its own CPU kernels
  (`MXNET_MKLDNN_ENABLED=0`), which compute the same operators with other roundings. Their
  outputs go to `output-native-K.npy`. Where MXNet's two backends disagree beyond the
  tolerance, the model's output is not determined to that tolerance by MXNet itself, and
  `run_ward.py` says so instead of calling ward's numbers wrong.
* **Is the reference MXNet's computation or its memory?** MXNet 1.9.1's CPU ROIAlign
  (`src/operator/contrib/roi_align.cc`, `ROIAlignForward`) skips a region n whose batch
  index is negative after writing 0 to element n of the *whole* output, not to the
  region's own rows: its rows keep whatever the memory held, and region 0's first
  elements are overwritten with zeros, one per skipped region. Its GPU kernel writes 0 to
  every element of a skipped region, which is what callers rely on: GluonCV's FPN heads
  set the regions that belong to another pyramid level to -1 and sum the levels'
  ROIAlign outputs, so on CPU each sum adds stale memory, and the first detection's
  features lose up to a thousand values. Measured on this MXNet: regions [0, 1, 1, 9, 9]
  then five of [-1, -1, -1, -1, -1] give region 0 the values [0.466, 0, 0, 0, 0, 0,
  -1.579, ...] where it alone gives [0.466, x1, ..., x5, -1.579, ...]. Ward writes zeros
  and leaves region 0 alone. For models with ROIAlign this tool rewrites every node
  `y = ROIAlign(x, rois)` of the symbol so that the kernel never sees a negative batch
  index and the skipped regions' rows are zero (`zero_negative_regions`), and recomputes
  the outputs on each backend: `output-roialign-zeroed-K.npy` and
  `output-native-roialign-zeroed-K.npy`.

`meta.json` records which references exist (`alt_references`). The same configuration as
the exporter's references otherwise (`MXNET_ENGINE_TYPE=NaiveEngine`,
`MXNET_SUBGRAPH_BACKEND=NONE`, one OpenMP thread): `export_zoo.py` says why. Each
backend runs in its own process, since MXNet reads `MXNET_MKLDNN_ENABLED` when it loads.
"""

import argparse
import json
import os
import subprocess
import sys

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import zoo_cache  # noqa: E402
from run_ward import DETECTION_FAMILIES  # noqa: E402

ROI_ALIGN = "_contrib_ROIAlign"


def zero_negative_regions(graph):
    """The symbol JSON `graph` with each `y = ROIAlign(x, rois)` computed as MXNet means
    it: the regions with a negative batch index replaced by a valid one before the kernel
    sees them (so it neither clobbers region 0 nor leaves rows unwritten), and their rows
    of the output zeroed after it:

        kept = rois[:, 0:1] >= 0
        y = where(kept, ROIAlign(x, where(kept, rois, 0)), 0)   (kept broadcast)

    Nodes stay in topological order (the new nodes around their ROIAlign), and every
    reference to a node (inputs, heads, arg_nodes) is renumbered."""
    old_nodes = graph["nodes"]
    new_nodes, index = [], {}
    rewritten = 0

    def renumber(entry):
        return [index[entry[0]]] + list(entry[1:])

    for i, node in enumerate(old_nodes):
        node = dict(node)
        node["inputs"] = [renumber(e) for e in node.get("inputs", [])]
        if node.get("op") != ROI_ALIGN:
            new_nodes.append(node)
            index[i] = len(new_nodes) - 1
            continue
        rewritten += 1
        name = node["name"]
        rois = node["inputs"][1]

        def add(op, suffix, inputs, attrs=None):
            new_nodes.append({"op": op, "name": "%s_zeroed_%s" % (name, suffix),
                              "attrs": attrs or {}, "inputs": inputs})
            return [len(new_nodes) - 1, 0, 0]

        batch = add("slice_axis", "batch", [rois], {"axis": "1", "begin": "0", "end": "1"})
        kept = add("_greater_equal_scalar", "kept", [batch], {"scalar": "0"})
        kept_rois = add("broadcast_like", "kept_rois", [kept, rois])
        safe = add("where", "safe_rois", [kept_rois, rois, add("zeros_like", "no_rois", [rois])])
        node["inputs"] = [node["inputs"][0], safe] + node["inputs"][2:]
        new_nodes.append(node)
        y = [len(new_nodes) - 1, 0, 0]
        kept4 = add("Reshape", "kept4", [kept], {"shape": "(-1, 1, 1, 1)"})
        mask = add("broadcast_like", "mask", [kept4, y])
        add("where", "out", [mask, y, add("zeros_like", "zeros", [y])])
        index[i] = len(new_nodes) - 1
    out = dict(graph)
    out["nodes"] = new_nodes
    out["arg_nodes"] = [index[i] for i in graph["arg_nodes"]]
    out["heads"] = [renumber(h) for h in graph["heads"]]
    # MXNet recomputes the row pointers when it loads a graph without them.
    out.pop("node_row_ptr", None)
    return out, rewritten


def forward(d, meta, graph):
    """MXNet's outputs for the symbol JSON `graph` on the model's weights and inputs."""
    import mxnet as mx

    names = [i["name"] for i in meta["inputs"]]
    sym = mx.sym.load_json(json.dumps(graph))
    block = mx.gluon.SymbolBlock(sym, [mx.sym.var(n) for n in names])
    block.collect_params().load(os.path.join(d, "model-0000.params"), ctx=mx.cpu(),
                                allow_missing=False, ignore_extra=False)
    outs = block(*[mx.nd.array(np.load(os.path.join(d, "input-%s.npy" % n)), dtype=i["dtype"])
                   for n, i in zip(names, meta["inputs"])])
    if not isinstance(outs, (list, tuple)):
        outs = [outs]
    return [o.asnumpy() for o in outs]


def child(d, native):
    """One backend's references for the model in `d` (run in its own process)."""
    with open(os.path.join(d, "meta.json")) as f:
        meta = json.load(f)
    with open(os.path.join(d, "model-symbol.json")) as f:
        graph = json.load(f)
    written = []
    variants = [("native-", graph)] if native else []
    patched, rewritten = zero_negative_regions(graph)
    if rewritten:
        variants.append(("native-roialign-zeroed-" if native else "roialign-zeroed-", patched))
    for prefix, g in variants:
        for k, a in enumerate(forward(d, meta, g)):
            np.save(os.path.join(d, "output-%s%d.npy" % (prefix, k)), a)
        written.append(prefix.rstrip("-"))
    print(json.dumps(written))


def run_model(d):
    written = []
    for native in (False, True):
        env = dict(os.environ)
        if native:
            env["MXNET_MKLDNN_ENABLED"] = "0"
        out = subprocess.run([sys.executable, __file__, "--child", d] + (["--native"] if native else []),
                             env=env, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError("%s: %s" % (d, out.stderr.strip()[-600:]))
        written += json.loads(out.stdout.strip().splitlines()[-1])
    meta_path = os.path.join(d, "meta.json")
    with open(meta_path) as f:
        meta = json.load(f)
    meta["alt_references"] = sorted(written)
    with open(meta_path, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
    return written


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--out", default=os.path.expanduser("~/.cache/ward-zoo"))
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--native", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.native)
        return
    for zoo, name, d, meta in zoo_cache.models(args.out, args.only):
        if meta.get("status") != "exported" or meta.get("family") not in DETECTION_FAMILIES:
            continue
        print("%s/%s: %s" % (zoo, name, ", ".join(run_model(d))))
        sys.stdout.flush()

if __name__ == "__main__":
    main()
