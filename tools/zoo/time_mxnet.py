#!/usr/bin/env python3
"""Time MXNet's load + first forward of every exported zoo model in a fresh process.

Run with the zoo virtual environment from the repository root, after `export_zoo.py`:

    .venv-zoo/bin/python tools/zoo/time_mxnet.py                  # every exported model
    .venv-zoo/bin/python tools/zoo/time_mxnet.py --only 'ssd_*'   # some (fnmatch on the name)

Why this exists: the exporter records MXNet's load + first forward in the process that
has just built, run, hybridized and exported the same network. By then MXNet's storage
pool holds the activations' memory, oneDNN's primitive cache holds every convolution of
that network and the operators' code is paged in, so that "first" forward is a warm
one. A user who loads an exported model starts a process, imports mxnet and loads the
files; `ward predict` is timed the same way (a fresh process). This tool measures MXNet
like that: for each model, `--repeats` fresh Python processes, each of which imports
mxnet and numpy and reads the inputs (not timed), then times `SymbolBlock.imports` of
the exported files plus one forward and `waitall()`.

Each model is timed in two configurations, each the median of the repeats:

* `reference`: the exporter's (`MXNET_ENGINE_TYPE=NaiveEngine`,
  `MXNET_SUBGRAPH_BACKEND=NONE`), the configuration whose outputs are the references;
* `default`: MXNet's own defaults (threaded engine, its default subgraph backend), as a
  user runs it.

Both with `OMP_NUM_THREADS=1`, as ward runs one thread in the zoo run. `run_ward.py`
compares ward with the faster of the two. The result goes to
`<cache>/<zoo>/<name>/mxnet-cold.json`; the import time of mxnet itself (never counted)
is recorded there too, and so is the model's largest activation (`largest_activation_bytes`:
the largest operator output, 4 bytes an element, from MXNet's shape inference of every
internal output; parameters are not activations), which issue 20's memory budget uses
(the package + 1.5 × the largest activation + 100 MB).
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

import zoo_cache

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
import mxnet as mx
t1 = time.perf_counter()
d = sys.argv[1]
meta = json.load(open(os.path.join(d, "meta.json")))
names = [i["name"] for i in meta["inputs"]]
arrays = [np.load(os.path.join(d, "input-%s.npy" % n)) for n in names]
t2 = time.perf_counter()
block = mx.gluon.SymbolBlock.imports(os.path.join(d, "model-symbol.json"), names,
                                     os.path.join(d, "model-0000.params"))
outs = block(*[mx.nd.array(a) for a in arrays])
mx.nd.waitall()
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_forward_s": t3 - t2}))
"""

CONFIGS = {
    "reference": {"MXNET_ENGINE_TYPE": "NaiveEngine", "MXNET_SUBGRAPH_BACKEND": "NONE"},
    "default": {},
}


def time_once(model_dir, config, timeout):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MXNET_ENGINE_TYPE", "MXNET_SUBGRAPH_BACKEND")}
    env["OMP_NUM_THREADS"] = "1"
    env.update(CONFIGS[config])
    p = subprocess.run([sys.executable, "-c", CHILD, model_dir], env=env, timeout=timeout,
                       capture_output=True, text=True)
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return None, tail[:300]
    return json.loads(p.stdout.strip().splitlines()[-1]), None


def largest_activation(model_dir):
    import mxnet as mx
    import numpy as np
    with open(os.path.join(model_dir, "meta.json")) as f:
        meta = json.load(f)
    internals = mx.sym.load(os.path.join(model_dir, "model-symbol.json")).get_internals()
    shapes = {i["name"]: tuple(i["shape"]) for i in meta["inputs"]}
    _, outs, _ = internals.infer_shape_partial(**shapes)
    sizes = [int(np.prod(s)) * 4 for n, s in zip(internals.list_outputs(), outs)
             if s and n.endswith("_output") and all(d > 0 for d in s)]
    return max(sizes) if sizes else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", default=os.path.expanduser("~/.cache/ward-zoo"))
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--timeout", type=int, default=600)
    args = ap.parse_args()
    dirs = [(zoo, name, d) for zoo, name, d, meta in zoo_cache.models(args.zoo, args.only)
            if meta.get("status") == "exported"]
    for zoo, name, d in dirs:
        result = {"repeats": args.repeats, "omp_num_threads": 1,
                  "largest_activation_bytes": largest_activation(d)}
        for config in CONFIGS:
            runs, imports, error = [], [], None
            for _ in range(args.repeats):
                try:
                    r, error = time_once(d, config, args.timeout)
                except subprocess.TimeoutExpired:
                    r, error = None, "timed out after %d s" % args.timeout
                if r is None:
                    break
                runs.append(r["load_forward_s"])
                imports.append(r["import_s"])
            if error is not None:
                result[config] = {"error": error}
            else:
                result[config] = {"load_forward_s": runs,
                                  "median_s": statistics.median(runs),
                                  "import_mxnet_s": statistics.median(imports)}
        with open(os.path.join(d, "mxnet-cold.json"), "w") as f:
            json.dump(result, f, indent=1, sort_keys=True)
            f.write("\n")
        print("%s/%s: %s" % (zoo, name, "  ".join(
            "%s %s" % (c, ("%.3f s" % result[c]["median_s"]) if "median_s" in result[c]
                       else "failed: " + result[c]["error"]) for c in CONFIGS)), flush=True)


if __name__ == "__main__":
    main()
