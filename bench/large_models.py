#!/usr/bin/env python3
"""Large models, loaded and run once: a whole `ward predict` against MXNet's load + first
forward, with peak memory (issue 20, item 6). Driven by bench/large_models.sh.

    large_models.py make-vgg16 ZOO          # VGG16 (224x224, random weights) into ZOO/extra/vgg16
    large_models.py mxnet MODEL_DIR         # one MXNet load + first forward: JSON on stdout
    large_models.py run WARD ZOO OUT REPEATS MODEL...   # the table (Markdown) on stdout

WARD is a binary, or `label=binary,label=binary` to compare builds in one run (an A/B:
each repeat runs every build, then MXNet, so they share the machine's conditions; the
package is imported and signed once, by the last build).

For every model (`zoo/name` under ZOO, as tools/zoo/export_zoo.py writes them) it does
what tools/zoo/run_ward.py does: `ward import mxnet ... --sign-key` once, then `ward
predict PKG --trust KEY.pub` REPEATS times, each the whole command (signature check,
parsing, plan building, the forward), timed from outside, its peak resident memory read
with `os.wait4`; and REPEATS times, each in a fresh process, MXNet 1.9.1's
`SymbolBlock.imports` + first forward (timed inside the process, after `import mxnet`,
as the zoo's exporter times it), with that process's peak memory. Medians of the times,
largest of the memories. ward's outputs are compared with MXNet's reference
(`output-0.npy`, within 1e-4 * max(1, max|mxnet|)).

MXNet runs as the zoo exporter runs it: NaiveEngine, one OpenMP thread, and no oneDNN
subgraph pass (MXNET_SUBGRAPH_BACKEND=NONE: the pip build's default pass fuses
convolution + BatchNorm and computes wrong numbers when a convolution's output fans out;
the references must come from MXNet's own operators). ward runs with its defaults.

The memory budget is issue 20's: the package's size + 1.5x the largest layer's
activations (float32, from MXNet's shape inference of every internal output) + 100 MB.
"""

import json
import os
import statistics
import subprocess
import sys
import time

MX_ENV = {"MXNET_ENGINE_TYPE": "NaiveEngine", "OMP_NUM_THREADS": "1",
          "MXNET_SUBGRAPH_BACKEND": "NONE"}


def make_vgg16(zoo):
    os.environ.update(MX_ENV)
    import mxnet as mx
    import numpy as np
    out = os.path.join(zoo, "extra", "vgg16")
    if os.path.exists(os.path.join(out, "meta.json")):
        return
    os.makedirs(out, exist_ok=True)
    seed = 16
    mx.random.seed(seed)
    np.random.seed(seed)
    rs = np.random.RandomState(seed)
    net = mx.gluon.model_zoo.vision.vgg16(pretrained=False)
    net.initialize(mx.init.Xavier())
    x = rs.uniform(-1, 1, (1, 3, 224, 224)).astype("float32")
    net.hybridize()
    net(mx.nd.array(x))
    mx.nd.waitall()
    prefix = os.path.join(out, "model")
    net.export(prefix, epoch=0)
    block = mx.gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
    o = block(mx.nd.array(x))
    np.save(os.path.join(out, "input-data.npy"), x)
    np.save(os.path.join(out, "output-0.npy"), o.asnumpy())
    meta = {"zoo": "extra", "name": "vgg16", "status": "exported", "seed": seed,
            "inputs": [{"name": "data", "dtype": "float32", "shape": list(x.shape)}],
            "outputs": mx.sym.load(prefix + "-symbol.json").list_outputs(),
            "params_bytes": os.path.getsize(prefix + "-0000.params")}
    with open(os.path.join(out, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)


def mxnet_once(d):
    """One MXNet load + first forward, in this (fresh) process."""
    os.environ.update(MX_ENV)
    import resource
    import mxnet as mx
    import numpy as np
    meta = json.load(open(os.path.join(d, "meta.json")))
    names = [i["name"] for i in meta["inputs"]]
    xs = [mx.nd.array(np.load(os.path.join(d, "input-%s.npy" % n))) for n in names]
    sym_file, params_file = os.path.join(d, "model-symbol.json"), os.path.join(d, "model-0000.params")
    t0 = time.perf_counter()
    block = mx.gluon.SymbolBlock.imports(sym_file, names, params_file)
    t1 = time.perf_counter()
    out = block(*xs)
    mx.nd.waitall()
    t2 = time.perf_counter()
    del out
    # The largest output of an operator (float32; the parameters are not activations),
    # from MXNet's own shape inference.
    internals = mx.sym.load(sym_file).get_internals()
    shapes = {i["name"]: tuple(i["shape"]) for i in meta["inputs"]}
    _, outs, _ = internals.infer_shape(**shapes)
    largest = max(int(np.prod(s)) * 4 for n, s in zip(internals.list_outputs(), outs)
                  if s is not None and n.endswith("_output"))
    print(json.dumps({"load_s": t1 - t0, "forward_s": t2 - t1,
                      "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "largest_activation": largest}))


def timed(cmd, env=None):
    """Runs cmd: (returncode, stdout, stderr, wall s, peak RSS). The peak is the child's
    own, read by GNU time where there is one: a process spawned from this script counts
    the script's memory as its own until its exec, which would floor a small model's peak
    at this script's size."""
    import re
    import tempfile
    gnu_time = os.path.exists("/usr/bin/time")
    if gnu_time:
        cmd = ["/usr/bin/time", "-f", "peak-rss-kb %M"] + list(cmd)
    with tempfile.TemporaryFile() as fo, tempfile.TemporaryFile() as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=fo, stderr=fe, env=env)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read().decode(), fe.read().decode()
        rss = ru.ru_maxrss * 1024
        peak = re.compile(r"^peak-rss-kb (\d+)$", re.M)
        m = peak.search(err) if gnu_time else None
        if m:
            rss = int(m.group(1)) * 1024
            err = peak.sub("", err)
        return p.returncode, out, err, wall, rss


def run(wards, zoo, out, repeats, models):
    import numpy as np
    builds = [w.split("=", 1) if "=" in w else ["ward", w] for w in wards.split(",")]
    ward = builds[-1][1]
    os.makedirs(out, exist_ok=True)
    keys = os.path.join(out, "keys")
    if not os.path.exists(os.path.join(keys, "bench.key")):
        subprocess.run([ward, "keygen", "--out", keys, "--name", "bench"], check=True,
                       stdout=subprocess.DEVNULL)
    rows = []
    for model in models:
        d = os.path.join(zoo, model)
        meta = json.load(open(os.path.join(d, "meta.json")))
        name = model.replace("/", "_")
        pkg = os.path.join(out, name + ".pkg")
        subprocess.run(["rm", "-rf", pkg], check=True)
        cmd = [ward, "import", "mxnet", "--symbol", os.path.join(d, "model-symbol.json"),
               "--params", os.path.join(d, "model-0000.params"), "--out", pkg,
               "--sign-key", os.path.join(keys, "bench.key"), "--audit-log", os.devnull]
        for i in meta["inputs"]:
            cmd += ["--input", "%s:%s:%s" % (i["name"], i["dtype"], ",".join(map(str, i["shape"])))]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        pkg_bytes = sum(os.path.getsize(os.path.join(pkg, f)) for f in os.listdir(pkg))
        walls = {label: [] for label, _ in builds}
        rsss = {label: [] for label, _ in builds}
        mx = []
        for _ in range(repeats):
            for label, binary in builds:
                pred = os.path.join(out, name + ".pred")
                subprocess.run(["rm", "-rf", pred], check=True)
                cmd = [binary, "predict", pkg, "--trust", os.path.join(keys, "bench.pub"),
                       "--out", pred, "--audit-log", os.devnull]
                for i in meta["inputs"]:
                    cmd += ["--input", "%s=%s" % (i["name"], os.path.join(d, "input-%s.npy" % i["name"]))]
                rc, so, se, wall, rss = timed(cmd)
                if rc != 0:
                    raise SystemExit("%s predict %s failed: %s" % (label, model, se.strip()[-400:]))
                walls[label].append(wall)
                rsss[label].append(rss)
                got = np.load(os.path.join(pred, sorted(os.listdir(pred))[0]))
                want = np.load(os.path.join(d, "output-0.npy"))
                err = float(np.max(np.abs(got.astype(np.float64) - want)))
                tol = 1e-4 * max(1.0, float(np.max(np.abs(want))))
                if got.shape != want.shape or err > tol:
                    raise SystemExit("%s predict %s: wrong numbers (max err %g)" % (label, model, err))
            env = dict(os.environ, **MX_ENV)
            rc, so, se, _, _ = timed([sys.executable, __file__, "mxnet", d], env=env)
            if rc != 0:
                raise SystemExit("MXNet %s failed: %s" % (model, se.strip()[-400:]))
            mx.append(json.loads(so.strip().splitlines()[-1]))
        mx_s = statistics.median(m["load_s"] + m["forward_s"] for m in mx)
        largest = mx[0]["largest_activation"]
        budget = pkg_bytes + 1.5 * largest + 100e6
        for label, _ in builds:
            ward_s = statistics.median(walls[label])
            row = {"model": model, "build": label, "package_mb": pkg_bytes / 1e6,
                   "ward_s": ward_s, "ward_runs_s": walls[label], "mxnet_s": mx_s,
                   "mxnet_runs_s": [m["load_s"] + m["forward_s"] for m in mx],
                   "mxnet_load_s": statistics.median(m["load_s"] for m in mx),
                   "mxnet_forward_s": statistics.median(m["forward_s"] for m in mx),
                   "ratio": ward_s / mx_s, "ward_peak_mb": max(rsss[label]) / 1e6,
                   "mxnet_peak_mb": max(m["peak_rss"] for m in mx) / 1e6,
                   "largest_activation_mb": largest / 1e6, "budget_mb": budget / 1e6}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    print("| model | build | package | ward predict (whole) | MXNet load + first forward | ward / MXNet "
          "| ward peak RSS | budget (package + 1.5x largest activation + 100 MB) | MXNet peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %s | %.1f MB | %.2f s | %.2f s (%.2f + %.2f) | %.2fx | %.1f MB | %.1f MB (%s) | %.1f MB |" % (
            r["model"], r["build"], r["package_mb"], r["ward_s"], r["mxnet_s"], r["mxnet_load_s"],
            r["mxnet_forward_s"], r["ratio"], r["ward_peak_mb"], r["budget_mb"],
            "within" if r["ward_peak_mb"] <= r["budget_mb"] else "over", r["mxnet_peak_mb"]))
    with open(os.path.join(out, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)


def main():
    if len(sys.argv) >= 3 and sys.argv[1] == "make-vgg16":
        make_vgg16(sys.argv[2])
    elif len(sys.argv) == 3 and sys.argv[1] == "mxnet":
        mxnet_once(sys.argv[2])
    elif len(sys.argv) >= 6 and sys.argv[1] == "run":
        run(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6:])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
