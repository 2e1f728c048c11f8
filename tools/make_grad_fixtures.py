#!/usr/bin/env python3
"""Record MXNet 1.9.1's gradients of every one-operator case, for ward's training checks.

Run with the MXNet virtual environment from the repository root, after
tools/make_op_fixtures.py (whose cases, inputs and parameters it reuses):

    .venv-mx/bin/python tools/make_grad_fixtures.py            # all cases
    .venv-mx/bin/python tools/make_grad_fixtures.py conv2d_k3  # names starting so

For every case of tests/fixtures/ops/ it binds the same symbol to the same inputs,
parameters and auxiliary states (read back from the op fixture, so the two can never
disagree), runs `forward(is_train=True)` and `backward()` with a random head gradient
for every output, and writes `tests/fixtures/grads/<case>/`:

* `head-<k>.npy`: the head gradient of output k (float32);
* `grad-<name>.npy`: the gradient MXNet's autograd gives for every argument, data
  inputs, labels and parameters alike (labels are recorded as MXNet gives them,
  usually zeros), except integer indices (Embedding's data, `no_gradient`);
* `meta.json`: the arguments in order, which are data and which parameters, and
  whether MXNet's training mode changed anything (`aux_updated`: the moving
  statistics BatchNorm updates in its backward pass).

and `tests/fixtures/grads/index.json`: every case with its status. A case is
`skipped` with the reason when its gradient is not a function of its inputs
(Dropout draws a random mask and RReLU random slopes in training mode), MXNet refuses to differentiate the
operator, or MXNet crashes computing it (the cases run in a child process, which is
restarted after a crash); those are listed, never dropped silently.

Determinism: the head gradient's seed derives from the case's name; MXNet runs on
the NaiveEngine with one thread and no subgraph fusion, as in make_op_fixtures.py.
"""

import hashlib
import json
import os
import shutil
import sys

os.environ["MXNET_ENGINE_TYPE"] = "NaiveEngine"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")

import numpy as np  # noqa: E402
import mxnet as mx  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPS = os.path.join(ROOT, "tests", "fixtures", "ops")
OUT_ROOT = os.path.join(ROOT, "tests", "fixtures", "grads")

# Operators whose training-mode output is random: their gradient depends on a mask
# MXNet draws from its own generator, which ward cannot (and must not) reproduce.
RANDOM_IN_TRAINING = {"Dropout"}


def seed_for(name):
    return int.from_bytes(hashlib.sha256(("grad:" + name).encode()).digest()[:4], "little")


def run_case(name):
    case_dir = os.path.join(OPS, name)
    with open(os.path.join(case_dir, "meta.json")) as f:
        meta = json.load(f)
    if meta["op"] in RANDOM_IN_TRAINING:
        return {"name": name, "op": meta["op"], "status": "skipped",
                "reason": "random mask in training mode"}
    if meta["op"] == "LeakyReLU" and meta["attrs"].get("act_type") == "rrelu":
        return {"name": name, "op": meta["op"], "status": "skipped",
                "reason": "random slopes in training mode"}
    sym = mx.sym.load(os.path.join(case_dir, "model-symbol.json"))
    saved = mx.nd.load(os.path.join(case_dir, "model-0000.params"))
    inputs = [i["name"] for i in meta["inputs"]]
    labels = meta.get("ignored_inputs", [])
    arg_names = sym.list_arguments()
    aux_names = sym.list_auxiliary_states()
    args = {}
    for n in arg_names:
        if ("arg:" + n) in saved:
            args[n] = saved["arg:" + n]
        else:
            a = np.load(os.path.join(case_dir, "input-%s.npy" % n))
            args[n] = mx.nd.array(a, dtype=a.dtype)
    aux = {n: saved["aux:" + n].copy() for n in aux_names}
    # Integer indices (Embedding's data) and inputs of an integer type (softmax's
    # lengths) have no gradient: MXNet refuses to be asked.
    no_grad = set(inputs) if meta["op"] == "Embedding" else set()
    no_grad |= {i["name"] for i in meta["inputs"] if i.get("dtype", "float32") != "float32"}
    if not [n for n in arg_names if n not in no_grad]:
        return {"name": name, "op": meta["op"], "status": "skipped",
                "reason": "every input is an integer: nothing to differentiate"}
    grads = {n: mx.nd.zeros(args[n].shape) for n in arg_names if n not in no_grad}
    req = {n: ("null" if n in no_grad else "write") for n in arg_names}
    try:
        ex = sym.bind(mx.cpu(), args, args_grad=grads, grad_req=req, aux_states=aux)
        outs = ex.forward(is_train=True)
        rng = np.random.RandomState(seed_for(name))
        heads = [rng.normal(0, 1, size=o.shape).astype(np.float32) for o in outs]
        ex.backward([mx.nd.array(h) for h in heads])
        got = {n: grads[n].asnumpy() for n in arg_names if n not in no_grad}
    except mx.base.MXNetError as e:
        lines = [l for l in str(e).strip().splitlines() if l.strip()] or [""]
        # MXNet's C++ errors start with its traceback; the reason is the last line.
        first = (lines[-1] if lines and lines[0].startswith("Traceback") else lines[0])[:200]
        return {"name": name, "op": meta["op"], "status": "skipped",
                "reason": "MXNet does not differentiate it: " + first}
    outdir = os.path.join(OUT_ROOT, name)
    if os.path.isdir(outdir):
        shutil.rmtree(outdir)
    os.makedirs(outdir)
    for k, h in enumerate(heads):
        np.save(os.path.join(outdir, "head-%d.npy" % k), h)
    for n, g in got.items():
        np.save(os.path.join(outdir, "grad-%s.npy" % n), g.astype(np.float32))
    updated = [n for n in aux_names
               if not np.array_equal(ex.aux_dict[n].asnumpy(), saved["aux:" + n].asnumpy())]
    info = {
        "op": meta["op"],
        "arguments": arg_names,
        "data": [n for n in inputs if n not in labels],
        "labels": labels,
        "params": [n for n in arg_names if n not in inputs],
        "no_gradient": sorted(no_grad),
        "aux_updated": updated,
        "mxnet_version": mx.__version__,
    }
    with open(os.path.join(outdir, "meta.json"), "w") as f:
        json.dump(info, f, indent=2)
        f.write("\n")
    return {"name": name, "op": meta["op"], "status": "recorded"}


def child(names, log):
    """Records `names` in order, one JSON line per case to `log`; `started` first, so the
    parent knows which case a crash of MXNet itself (a segfault) took down."""
    with open(log, "a") as f:
        for n in names:
            f.write(json.dumps({"started": n}) + "\n")
            f.flush()
            f.write(json.dumps(run_case(n)) + "\n")
            f.flush()


def main(argv):
    if argv[:1] == ["--child"]:
        child(argv[2:], argv[1])
        return 0
    prefixes = [a for a in argv if not a.startswith("-")]
    names = sorted(n for n in os.listdir(OPS) if os.path.isdir(os.path.join(OPS, n)))
    chosen = [n for n in names if not prefixes or any(n.startswith(p) for p in prefixes)]
    if not prefixes and os.path.isdir(OUT_ROOT):
        shutil.rmtree(OUT_ROOT)
    os.makedirs(OUT_ROOT, exist_ok=True)
    # MXNet crashes the process on some inputs it accepts: the cases run in a child
    # process, restarted after the case that crashed it.
    import subprocess
    import tempfile
    results = {}
    pending = list(chosen)
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "log.jsonl")
        while pending:
            open(log, "w").close()
            proc = subprocess.run([sys.executable, __file__, "--child", log] + pending,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            started = None
            for line in open(log):
                e = json.loads(line)
                if "started" in e:
                    started = e["started"]
                else:
                    results[e["name"]] = e
                    started = None
            if started is not None:
                with open(os.path.join(OPS, started, "meta.json")) as f:
                    crashed_op = json.load(f)["op"]
                results[started] = {"name": started, "op": crashed_op, "status": "skipped",
                                    "reason": "MXNet crashed (exit %d)" % proc.returncode}
            elif proc.returncode != 0:
                sys.stderr.write(proc.stderr.decode(errors="replace"))
                return 1
            pending = [n for n in pending if n not in results]
    index = [results[n] for n in chosen]
    index_path = os.path.join(OUT_ROOT, "index.json")
    written = index
    if prefixes and os.path.exists(index_path):
        # Regenerating some cases keeps every other case's entry, in name order.
        with open(index_path) as f:
            kept = {e["name"]: e for e in json.load(f)["cases"]}
        kept.update({e["name"]: e for e in index})
        written = [kept[n] for n in sorted(kept)]
    with open(index_path, "w") as f:
        json.dump({"mxnet_version": mx.__version__, "cases": written}, f, indent=1)
        f.write("\n")
    recorded = [e for e in index if e["status"] == "recorded"]
    total = sum(os.path.getsize(os.path.join(dp, fn))
                for dp, _, fns in os.walk(OUT_ROOT) for fn in fns)
    print("%d cases recorded, %d skipped, %d bytes" % (len(recorded), len(index) - len(recorded), total))
    for e in index:
        if e["status"] != "recorded":
            print("  skipped %-32s %-14s %s" % (e["name"], e.get("op", "?"), e["reason"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
