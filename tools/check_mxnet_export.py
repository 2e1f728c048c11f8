#!/usr/bin/env python3
"""Checks that MXNet 1.9.1 loads a model written by `ward export mxnet` and predicts what
ward predicts.

Run by hand with the MXNet virtual environment (mxnet 1.9.1, numpy 1.23.5); not in CI:

    ward export mxnet PKG --trust KEY.pub --out /tmp/x/model
    ward predict PKG --trust KEY.pub --input data=in.npy --out /tmp/x/ward
    .venv-mx/bin/python tools/check_mxnet_export.py /tmp/x/model \
        --input data=in.npy --ward /tmp/x/ward

The files are loaded both ways MXNet offers:

* `mx.gluon.nn.SymbolBlock.imports(PREFIX-symbol.json, inputs, PREFIX-0000.params)`
  (Gluon's `ParameterDict.load` strips the `arg:`/`aux:` keys; it refuses missing and
  extra parameters, so the file must hold exactly the symbol's arguments and states);
* `mx.mod.Module.load(PREFIX, 0)`, bound for inference and run with `forward`.

Label variables (a `SoftmaxOutput`'s `softmax_label`, ...) are not inputs of the package.
Module binds without them (`label_names` given, no label shapes, as for inference);
SymbolBlock needs every non-parameter variable as an input, so they are fed zeros of the
shape MXNet infers for them (the label is not read at inference).

Each output listed by `list_outputs()` is compared with `WARD_DIR/<name>.npy` (what
`ward predict --out WARD_DIR` writes). The script prints the max abs difference per output
and loader, and exits 1 if one exceeds --tolerance times max(1, max|ward|) or if an output
name has no file.
"""

import argparse
import json
import os
import sys

os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402


def parse_inputs(specs):
    inputs = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep:
            sys.exit(f"--input {spec!r} must have the form NAME=FILE.npy")
        inputs[name] = np.load(path)
    return inputs


def label_shapes(sym, inputs, params):
    """The shapes MXNet infers for the symbol's variables that are neither inputs nor
    parameters: the labels of loss heads."""
    labels = [a for a in sym.list_arguments() if a not in inputs and a not in params]
    if not labels:
        return {}
    arg_shapes, _, _ = sym.infer_shape_partial(**{k: v.shape for k, v in inputs.items()})
    by_name = dict(zip(sym.list_arguments(), arg_shapes))
    return {name: tuple(by_name[name]) for name in labels}


def with_symbol_block(prefix, inputs, labels):
    names = list(inputs) + list(labels)
    block = mx.gluon.nn.SymbolBlock.imports(
        prefix + "-symbol.json", names, prefix + "-0000.params", ctx=mx.cpu()
    )
    args = [mx.nd.array(inputs[n], dtype=inputs[n].dtype) for n in inputs]
    args += [mx.nd.zeros(labels[n]) for n in labels]
    out = block(*args)
    if isinstance(out, mx.nd.NDArray):
        out = [out]
    return [o.asnumpy() for o in out]


def with_module(prefix, inputs, labels):
    module = mx.mod.Module.load(
        prefix, 0, data_names=list(inputs), label_names=list(labels) or None, context=mx.cpu()
    )
    module.bind(
        data_shapes=[(n, inputs[n].shape) for n in inputs],
        for_training=False,
    )
    batch = mx.io.DataBatch([mx.nd.array(inputs[n], dtype=inputs[n].dtype) for n in inputs])
    module.forward(batch, is_train=False)
    return [o.asnumpy() for o in module.get_outputs()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="PREFIX of PREFIX-symbol.json and PREFIX-0000.params")
    parser.add_argument("--input", action="append", required=True, metavar="NAME=FILE.npy")
    parser.add_argument("--ward", required=True, metavar="WARD_DIR",
                        help="the --out directory of `ward predict`")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args()

    inputs = parse_inputs(args.input)
    sym = mx.sym.load(args.prefix + "-symbol.json")
    saved = mx.nd.load(args.prefix + "-0000.params")
    params = {k.split(":", 1)[1] for k in saved}
    labels = label_shapes(sym, inputs, params)
    outputs = sym.list_outputs()
    print(f"mxnet {mx.__version__}; arguments {len(sym.list_arguments())}, "
          f"auxiliary states {sym.list_auxiliary_states()}, outputs {outputs}")
    if labels:
        print(f"labels (fed zeros to SymbolBlock only): {labels}")

    expected = []
    for name in outputs:
        path = os.path.join(args.ward, name + ".npy")
        if not os.path.isfile(path):
            sys.exit(f"MXNet lists output {name!r}, but {path} does not exist")
        expected.append(np.load(path))

    report = {"prefix": args.prefix, "outputs": outputs, "max_abs_diff": {}}
    failed = False
    for loader, run in [("SymbolBlock.imports", with_symbol_block), ("Module.load", with_module)]:
        got = run(args.prefix, inputs, labels)
        if len(got) != len(expected):
            print(f"{loader}: {len(got)} outputs, ward has {len(expected)}")
            failed = True
            continue
        for name, g, w in zip(outputs, got, expected):
            if g.shape != w.shape:
                print(f"{loader}: {name}: shape {g.shape}, ward {w.shape}")
                failed = True
                continue
            diff = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if g.size else 0.0
            allowed = args.tolerance * max(1.0, float(np.max(np.abs(w))) if w.size else 1.0)
            ok = diff <= allowed
            failed |= not ok
            report["max_abs_diff"].setdefault(loader, {})[name] = diff
            print(f"{loader}: {name} {g.shape}: max |mxnet - ward| = {diff:.3g}"
                  f" ({'ok' if ok else 'TOO LARGE'}, allowed {allowed:.3g})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
