#!/usr/bin/env python3
"""Import and run every exported zoo model with ward, and write docs/COVERAGE.md.

Run after tools/zoo/export_zoo.py, from the repository root, with any Python 3 that has
numpy (the zoo venv does):

    .venv-zoo/bin/python tools/zoo/run_ward.py                     # every exported model
    .venv-zoo/bin/python tools/zoo/run_ward.py --only 'resnet*'    # fnmatch on the name
    .venv-zoo/bin/python tools/zoo/run_ward.py --ward target/release/ward --zoo ~/.cache/ward-zoo

For every `<zoo>/<name>/meta.json` under the zoo folder it does what a user would:

1. `ward keygen` once (a throwaway key in `<zoo>/.ward-run/keys/`);
2. `ward import mxnet --symbol ... --params ... --input NAME:DTYPE:SHAPE ... --out PKG
   --sign-key KEY` (a refusal exits non-zero with one line naming the node and operator);
3. `ward predict PKG --trust KEY.pub --input NAME=input-NAME.npy --out DIR` three times; the
   wall clock of the whole command (signature check, parsing, plan building, forward) is
   taken as the median of the three, and its peak resident memory (`ru_maxrss` of the child,
   from `os.wait4`) as the largest;
4. compares ward's outputs, in the order `ward predict` prints them, with MXNet's
   `output-<k>.npy`: floats must match within `1e-4 * max(1, max|mxnet|)`, integers
   exactly (and the shapes must be equal).

Verdicts: `match`; `refused: <operator or reason>` (ward's import or predict exited with an
error; the first unsupported operator or attribute ward met is named); `wrong numbers (max
err E)`; `MXNet could not export` (the exporter recorded MXNet's own exception). Results
are also written to `<zoo>/.ward-run/results.json`. The table is deterministic given the
models, apart from the timings, the machine line and the date.
"""

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict

import numpy as np

import zoo_cache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_ZOO = os.path.join(os.path.expanduser("~"), ".cache", "ward-zoo")
ZOOS = ["mxnet", "gluoncv", "gluonnlp"]
ZOO_TITLES = {"mxnet": "MXNet 1.9.1 vision", "gluoncv": "GluonCV 0.10.5.post0", "gluonnlp": "GluonNLP 0.10.0"}


def run_timed(cmd, timeout):
    """Runs cmd; returns (returncode, stdout, stderr, wall seconds, peak RSS bytes)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        return 124, out, err + "\ntimed out after %d s" % timeout, time.perf_counter() - t0, 0
    # communicate() reaps the child without its own rusage (RUSAGE_CHILDREN's ru_maxrss is
    # the largest over all children so far): run_rss below reads the child's own peak.
    return p.returncode, out, err, time.perf_counter() - t0, None


# A child's ru_maxrss counts the memory of the process it was forked from until its exec:
# spawned from this runner (which holds MXNet's reference outputs), a small model's peak
# would read as the runner's own size. GNU time forks ward from its own small process and
# prints ward's peak.
GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None
PEAK_LINE = re.compile(r"^ward-peak-rss-kb (\d+)$", re.M)


def run_rss(cmd, timeout):
    """Like run_timed, but reads the child's own peak RSS (through GNU time when there is
    one, else from os.wait4)."""
    if GNU_TIME:
        cmd = [GNU_TIME, "-f", "ward-peak-rss-kb %M"] + list(cmd)
    rc, out, err, wall, rss = reap_rss(cmd, timeout)
    m = PEAK_LINE.search(err) if GNU_TIME else None
    if m:
        rss = int(m.group(1)) * 1024
        err = PEAK_LINE.sub("", err)
    return rc, out, err, wall, rss


def reap_rss(cmd, timeout):
    """Like run_timed, but reaps the child with os.wait4 to read its peak RSS."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = t0 + timeout
    # read pipes without deadlock: outputs are small (a few lines)
    import threading
    bufs = {"out": b"", "err": b""}

    def pump(stream, key):
        bufs[key] = stream.read()

    threads = [threading.Thread(target=pump, args=(p.stdout, "out")),
               threading.Thread(target=pump, args=(p.stderr, "err"))]
    for t in threads:
        t.start()
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, ru = os.wait4(p.pid, 0)
            for t in threads:
                t.join()
            return 124, bufs["out"].decode(), bufs["err"].decode() + "\ntimed out", timeout, ru.ru_maxrss * 1024
        time.sleep(0.005)
    wall = time.perf_counter() - t0
    for t in threads:
        t.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, bufs["out"].decode(), bufs["err"].decode(), wall, ru.ru_maxrss * 1024


def refusal_reason(stderr):
    """The operator (or attribute) ward refused, from its one-line error."""
    text = stderr.strip()
    m = re.search(r'operator "([^"]+)" is not supported', text)
    if m:
        return m.group(1)
    m = re.search(r'\(([^()]+)\): attribute "([^"]+)" = (.*?) is not supported', text)
    if m:
        return '%s %s=%s' % (m.group(1), m.group(2), m.group(3)[:40])
    lines = [ln for ln in text.splitlines() if ln.strip() and "warning" not in ln.lower()]
    line = lines[-1] if lines else text
    line = re.sub(r"^(error|ward):\s*", "", line)
    return line[:160]


def unique_output_names(names):
    """MXNet's output names as ward names them: a name already given to an earlier head
    is suffixed with the head's index (`ward_mxnet::import`'s rule), since a package's
    outputs are named uniquely."""
    out = []
    for k, name in enumerate(names):
        out.append("%s_%d" % (name, k) if name in out else name)
    return out


def tolerance(a):
    """The issue's tolerance for MXNet's float output `a`: 1e-4 · max(1, max|a|)."""
    return 1e-4 * max(1.0, float(np.max(np.abs(a)))) if a.size else 0.0


def compare(mx_out, w_out):
    if list(mx_out.shape) != list(w_out.shape):
        return False, "shape %s vs MXNet %s" % (list(w_out.shape), list(mx_out.shape))
    if mx_out.dtype.kind in "iub":
        if not np.array_equal(mx_out, w_out.astype(mx_out.dtype)):
            return False, float(np.max(np.abs(mx_out.astype(np.float64) - w_out.astype(np.float64))))
        return True, 0.0
    a = mx_out.astype(np.float64)
    b = w_out.astype(np.float64)
    if not np.isfinite(a).all() or not np.isfinite(b).all():
        same = np.array_equal(np.isnan(a), np.isnan(b)) and np.array_equal(a[~np.isfinite(a)], b[~np.isfinite(b)]) \
            if a.shape == b.shape else False
        fin = np.isfinite(a) & np.isfinite(b)
        err = float(np.max(np.abs(a[fin] - b[fin]))) if fin.any() else 0.0
        return same and err <= tolerance(a[fin]), err
    err = float(np.max(np.abs(a - b))) if a.size else 0.0
    return err <= tolerance(a), err


# Detection heads (GluonCV's SSD, Faster/Mask R-CNN) return rows sorted by score (the
# R-CNNs without force_nms in one block per class): ids, scores, boxes (and masks), each
# output (B, N, ...) with output 1 the scores. Two scores that differ by less than the
# tolerance are equal as far as this comparison can tell, so the order of their rows is
# not determined by it, and random weights put thousands of candidate scores in a narrow
# band where such near-ties are everywhere. Which of two near-tied rows comes first then
# follows the scores' last bits, and MXNet's own two CPU backends disagree on it
# (measured: mask_rcnn_resnet18 run with MXNET_MKLDNN_ENABLED=0, where softmax is MXNet's
# own loop instead of oneDNN's, swaps 3 pairs of its default run's rows, max error 131).
# So consecutive rows whose MXNet scores are within the score output's tolerance form a
# group, and ward's rows at a group's positions may be any permutation of MXNet's: each
# ward row must still match one MXNet row of its group in every output within that
# output's tolerance. Nothing moves across groups.
DETECTION_FAMILIES = ("detection", "instance segmentation")


def tie_groups(scores, tol):
    """Runs of consecutive positions whose neighbouring scores are within `tol`."""
    groups, start = [], 0
    for i in range(1, len(scores) + 1):
        if i == len(scores) or not abs(float(scores[i - 1]) - float(scores[i])) <= tol:
            groups.append(range(start, i))
            start = i
    return groups


def match_group(fits, n):
    """A perfect matching of a group's ward rows to its MXNet rows (`fits(i, j)`: ward
    row i is MXNet row j within the tolerances) as each MXNet row's ward row, or the
    first ward row that no MXNet row of the group can take. It starts from the rows that
    match in place and augments from the others, so a group of identical rows (the -1
    padding) costs one check a row."""
    owner = [i if fits(i, i) else -1 for i in range(n)]
    placed = {o for o in owner if o >= 0}

    def augment(i, seen):
        for j in range(n):
            if j not in seen and fits(i, j):
                seen.add(j)
                if owner[j] < 0 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    for i in range(n):
        if i not in placed and not augment(i, set()):
            return i
    return owner


def compare_detections(mx_outs, w_outs):
    """Whether ward's detection rows are MXNet's up to the order of rows with equal
    scores: (ok, rows moved, reason)."""
    if len(mx_outs) < 2:
        return False, 0, "no score output"
    scores = mx_outs[1]
    if scores.ndim != 3 or scores.shape[2] != 1 or scores.dtype.kind != "f":
        return False, 0, "output 1 is not a (B, N, 1) score"
    lead = scores.shape[:2]
    if any(m.shape[:2] != lead or w.shape != m.shape for m, w in zip(mx_outs, w_outs)):
        return False, 0, "outputs are not row-aligned"
    a = [m.astype(np.float64) for m in mx_outs]
    w = [x.astype(np.float64) for x in w_outs]
    tols = [tolerance(m) for m in a]
    moved = 0
    for b in range(lead[0]):
        for g in tie_groups(scores[b, :, 0], tols[1]):
            def fits(i, j, b=b, g=g):
                return all(np.max(np.abs(x[b, g[i]] - m[b, g[j]]), initial=0.0) <= t
                           for x, m, t in zip(w, a, tols))
            owner = match_group(fits, len(g))
            if isinstance(owner, int):
                return False, moved, ("batch %d row %d is none of MXNet's rows %d..%d (their scores "
                                      "are equal within the tolerance)" % (b, g[owner], g[0], g[-1]))
            moved += sum(1 for j, i in enumerate(owner) if i != j)
    return True, moved, ""


def judge_detections(d, meta, mx_outs, w_outs, res):
    """A detection head that failed the plain comparison (`mx_outs`: MXNet's reference),
    judged with MXNet's second opinions (`alt_references.py`): (verdict, detail). Records
    on `res` the reference used and the rows reordered when it matches."""
    n = len(w_outs)

    def load(prefix):
        paths = [os.path.join(d, "output-%s%d.npy" % (prefix, k)) for k in range(n)]
        return [np.load(p) for p in paths] if all(os.path.exists(p) for p in paths) else None

    # Where ROIAlign's stale rows were zeroed, that is MXNet's computation; the plain
    # reference adds whatever memory MXNet's CPU kernel left behind.
    reference, base = mx_outs, ""
    zeroed = load("roialign-zeroed-") if "roialign-zeroed" in meta.get("alt_references", []) else None
    if zeroed is not None and not all(np.array_equal(a, z, equal_nan=True) for a, z in zip(mx_outs, zeroed)):
        base, reference = "roialign-zeroed-", zeroed
        res["reference"] = "MXNet with ROIAlign's stale rows zeroed"
    ok, moved, why = compare_detections(reference, w_outs)
    if ok:
        res["tied_rows_reordered"] = moved
        return "match", ""
    native = load("native-" + base)
    if native is None:
        return "wrong numbers", "not a reordering of rows with equal scores: %s" % why
    mx_ok, mx_moved, mx_why = compare_detections(reference, native)
    if mx_ok:
        return "wrong numbers", ("not a reordering of rows with equal scores: %s; MXNet's own CPU "
                                 "kernels (MXNET_MKLDNN_ENABLED=0) agree with its reference up to "
                                 "%d reordered rows" % (why, mx_moved))
    return "MXNet disagrees with itself", (
        "ward: %s; MXNet's own CPU kernels (MXNET_MKLDNN_ENABLED=0) against its oneDNN "
        "reference: %s" % (why, mx_why))


def tree_bytes(path):
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


def mxnet_s(r):
    """MXNet's load + first forward: the fresh-process time of `time_mxnet.py` where there is
    one, else the exporter's (warm) one."""
    if r.get("mxnet_cold_s"):
        return r["mxnet_cold_s"]
    return r["mxnet_load_s"] + r["mxnet_forward_s"]


def memory_budget(r):
    """Issue 20's: the package + 1.5 × the largest activation + 100 MB (None when unknown)."""
    if not r.get("package_bytes") or not r.get("largest_activation_bytes"):
        return None
    return r["package_bytes"] + 1.5 * r["largest_activation_bytes"] + 100e6


def run_model(ward, d, keys, work, timeout, repeats):
    meta = json.load(open(os.path.join(d, "meta.json")))
    res = {"zoo": meta["zoo"], "name": meta["name"], "family": meta.get("family", ""),
           "note": meta.get("note", "")}
    if meta.get("status") != "exported":
        res.update(verdict="MXNet could not export", detail="%s: %s" % (meta.get("stage"), meta.get("error")))
        return res
    with open(os.path.join(d, "model-symbol.json")) as f:
        res["ops"] = sorted({n["op"] for n in json.load(f)["nodes"] if n["op"] != "null"})
    res.update(params_bytes=meta["params_bytes"], mxnet_load_s=meta["mxnet_load_s"],
               mxnet_forward_s=meta["mxnet_first_forward_s"],
               inputs=meta["inputs"], outputs=meta["outputs"])
    cold_path = os.path.join(d, "mxnet-cold.json")
    if os.path.exists(cold_path):
        with open(cold_path) as f:
            cold = json.load(f)
        medians = [cold[c]["median_s"] for c in ("reference", "default") if "median_s" in cold.get(c, {})]
        if medians:
            res["mxnet_cold_s"] = min(medians)
        res["largest_activation_bytes"] = cold.get("largest_activation_bytes")
    pkg = os.path.join(work, meta["zoo"], meta["name"])
    shutil.rmtree(pkg, ignore_errors=True)
    os.makedirs(os.path.dirname(pkg), exist_ok=True)
    cmd = [ward, "import", "mxnet", "--symbol", os.path.join(d, "model-symbol.json"),
           "--params", os.path.join(d, "model-0000.params"), "--out", pkg,
           "--sign-key", os.path.join(keys, "zoo.key"), "--audit-log", os.devnull]
    for i in meta["inputs"]:
        cmd += ["--input", "%s:%s:%s" % (i["name"], i["dtype"], ",".join(map(str, i["shape"])))]
    rc, out, err, wall, _ = run_timed(cmd, timeout)
    res["import_s"] = wall
    if rc != 0:
        res.update(verdict="refused", reason=refusal_reason(err), detail=err.strip()[-400:], stage="import")
        return res
    pred = pkg + ".pred"
    walls, rsss = [], []
    outs_order = None
    for _ in range(repeats):
        shutil.rmtree(pred, ignore_errors=True)
        cmd = [ward, "predict", pkg, "--trust", os.path.join(keys, "zoo.pub"), "--out", pred,
               "--audit-log", os.devnull]
        for i in meta["inputs"]:
            cmd += ["--input", "%s=%s" % (i["name"], os.path.join(d, "input-%s.npy" % i["name"]))]
        rc, out, err, wall, rss = run_rss(cmd, timeout)
        if rc != 0:
            res.update(verdict="refused", reason=refusal_reason(err), detail=err.strip()[-400:], stage="predict")
            return res
        walls.append(wall)
        rsss.append(rss)
        outs_order = [m.group(1) for m in re.finditer(r"^(\S.*?): shape \[[^\]]*\] -> ", out, re.M)]
    res.update(ward_predict_s=statistics.median(walls), ward_peak_rss=max(rsss),
               ward_output_names=outs_order, package_bytes=tree_bytes(pkg))
    n_mx = len(meta["outputs"])
    if len(outs_order) != n_mx:
        res.update(verdict="wrong numbers", detail="%d outputs, MXNet has %d" % (len(outs_order), n_mx))
        return res
    worst, ok_all, details = 0.0, True, []
    mx_outs = [np.load(os.path.join(d, "output-%d.npy" % k)) for k in range(n_mx)]
    w_outs = [np.load(os.path.join(pred, wname + ".npy")) for wname in outs_order]
    for k, (mx_out, w_out) in enumerate(zip(mx_outs, w_outs)):
        ok, err = compare(mx_out, w_out)
        if isinstance(err, str):
            details.append("output %d: %s" % (k, err))
            ok_all = False
            continue
        worst = max(worst, err)
        ok_all = ok_all and ok
    res["max_err"] = worst
    res["names_match"] = outs_order == unique_output_names(meta["outputs"])
    res["mxnet_names_repeat"] = len(set(meta["outputs"])) != len(meta["outputs"])
    if not ok_all and not details and res["family"] in DETECTION_FAMILIES:
        verdict, why = judge_detections(d, meta, mx_outs, w_outs, res)
        if verdict == "wrong numbers":
            why = "max err %.3g; %s" % (worst, why)
        res.update(verdict=verdict, detail=why)
        return res
    if ok_all:
        res["verdict"] = "match"
    else:
        res.update(verdict="wrong numbers", detail="; ".join(details))
    return res


def fmt_bytes(n):
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return ("%.0f %s" % (n, unit)) if unit == "B" else ("%.1f %s" % (n, unit))
        n /= 1024.0
    return ""


def verdict_text(r):
    v = r["verdict"]
    if v == "refused":
        return "refused: `%s`" % r["reason"].replace("|", "\\|")
    if v == "wrong numbers":
        if "max_err" in r and not r.get("detail"):
            return "wrong numbers (max err %.3g)" % r["max_err"]
        return "wrong numbers (%s)" % (r.get("detail") or "max err %.3g" % r.get("max_err", float("nan")))
    if v == "MXNet disagrees with itself":
        return "MXNet disagrees with itself (%s)" % r.get("detail", "").replace("|", "\\|")
    if v == "match" and (r.get("tied_rows_reordered") or r.get("reference")):
        said = []
        if r.get("reference"):
            said.append("against %s" % r["reference"])
        if r.get("tied_rows_reordered"):
            said.append("%d rows with equal scores in another order" % r["tied_rows_reordered"])
        return "match (%s)" % "; ".join(said)
    if v == "MXNet could not export":
        return "MXNet could not export: %s" % (r.get("detail", "").replace("MXNetError: MXNetError:", "MXNetError:")
                                               .replace("|", "\\|")[:160])
    return v


def machine_line():
    model, cores = platform.processor() or "?", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        if m:
            model = m.group(1).strip()
    except OSError:
        pass
    return "%s, %d cores" % (model, cores)


def write_markdown(results, path, ward_version, not_run, index, when=None):
    by_zoo = defaultdict(list)
    for r in results:
        by_zoo[r["zoo"]].append(r)
    L = []
    L.append("# Zoo coverage: MXNet's model zoos imported and run by ward")
    L.append("")
    L.append("Generated by `tools/zoo/run_ward.py` from models exported by `tools/zoo/export_zoo.py`")
    L.append("(see `tools/zoo/README.md`): one network per distinct architecture of MXNet 1.9.1's")
    L.append("`gluon.model_zoo.vision`, GluonCV 0.10.5.post0 and GluonNLP 0.10.0, random weights with")
    L.append("fixed seeds, small inputs, MXNet's outputs (computed with `MXNET_SUBGRAPH_BACKEND=NONE`)")
    L.append("as the reference. A model *matches* when every output is within")
    L.append("`1e-4 * max(1, max|mxnet|)` (floats) or equal (integers). CI does not run this.")
    L.append("")
    L.append("- Date of the run: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)))
    L.append("- Machine: %s (every command ran alone, one thread)" % machine_line())
    L.append("- ward: %s" % ward_version)
    L.append("- Times: ward = wall clock of a whole `ward predict` (signature check, parsing, plan")
    L.append("  building, one forward), median of 3 runs; MXNet = `SymbolBlock.imports` of the exported")
    L.append("  files + first forward + `waitall()` in a fresh process after `import mxnet` (not")
    L.append("  counted), median of 3 processes, the faster of MXNet's default configuration and the")
    L.append("  reference one (NaiveEngine, no subgraph pass), one OpenMP thread (`time_mxnet.py`).")
    L.append("  The exporter's own time is not used: it is taken in the process that has just built,")
    L.append("  run and exported the network, with MXNet's memory pool and oneDNN's primitive cache")
    L.append("  already warm, which a user loading a model never has.")
    L.append("- Memory: peak RSS = the `ward predict` process's `ru_maxrss`, read by GNU time (a")
    L.append("  process spawned from the Python runner counts the runner's memory until its exec);")
    L.append("  package = the ward package's size on disk; budget = issue 20's, the package + 1.5 ×")
    L.append("  the largest activation (the largest operator output of MXNet's shape inference,")
    L.append("  float32) + 100 MB.")
    L.append("- Refusals: `ward import` stops at the first unsupported node; the count below is by that")
    L.append("  first operator only.")
    L.append("")
    L.append("## Summary")
    L.append("")
    L.append("| zoo | distinct networks | MXNet could not export | exported | match | refused | wrong numbers | MXNet disagrees with itself |")
    L.append("|---|---|---|---|---|---|---|---|")
    tot = Counter()
    for zoo in ZOOS:
        rs = by_zoo.get(zoo, [])
        c = Counter(r["verdict"] for r in rs)
        exported = len(rs) - c["MXNet could not export"]
        row = [len(rs), c["MXNet could not export"], exported, c["match"], c["refused"], c["wrong numbers"],
               c["MXNet disagrees with itself"]]
        tot.update(dict(zip(["n", "f", "e", "m", "r", "w", "u"], row)))
        L.append("| %s | %s |" % (ZOO_TITLES[zoo], " | ".join(map(str, row))))
    L.append("| **all** | %d | %d | %d | %d | %d | %d | %d |" % tuple(tot[k] for k in ["n", "f", "e", "m", "r", "w", "u"]))
    L.append("")
    heads = [r for r in results if r.get("family") in DETECTION_FAMILIES and (
        r.get("tied_rows_reordered") or r.get("reference") or r["verdict"] != "match")
        and r["verdict"] in ("match", "wrong numbers", "MXNet disagrees with itself")]
    if heads:
        L.append("Detection heads (%d listed in the table with how they were judged) turn scores into" % len(heads))
        L.append("decisions: sorting, top k, suppression of overlapping boxes, and ROIAlign's sample")
        L.append("counts. With random weights thousands of scores lie within float noise of each other,")
        L.append("so a difference in the last bits upstream can change a decision. Such a model is")
        L.append("judged by `tools/zoo/alt_references.py`'s second MXNet references and this rule")
        L.append("(`run_ward.py`, `compare_detections`): rows whose scores are within the score output's")
        L.append("tolerance may come in any order, each still matching one MXNet row in every output;")
        L.append("where MXNet's CPU ROIAlign leaves a skipped region's rows stale and zeroes region 0's")
        L.append("first values instead (the FPN heads skip most regions at each level), the reference is")
        L.append("MXNet's own computation without that (as its GPU kernel computes it); and")
        L.append("a model whose MXNet CPU backends (oneDNN and MXNet's own kernels) disagree with each")
        L.append("other under the same rule is counted as *MXNet disagrees with itself*, not as a match.")
        L.append("")
    blockers = Counter(r["reason"] for r in results if r["verdict"] == "refused")
    if blockers:
        L.append("Operators (or attributes) that stop a model, with how many models they stop. Ward's")
        L.append("importer names the first unsupported node it meets, so a model may need more than")
        L.append("the one it is counted under.")
        L.append("")
        L.append("| operator / reason | models |")
        L.append("|---|---|")
        for reason, n in sorted(blockers.items(), key=lambda kv: (-kv[1], kv[0])):
            L.append("| `%s` | %d |" % (reason.replace("|", "\\|"), n))
        L.append("")
    seen = {op for r in results if r["verdict"] == "match" for op in r.get("ops", [])}
    unseen = Counter(op for r in results if r["verdict"] == "refused" for op in set(r.get("ops", [])) - seen)
    if unseen:
        L.append("Every operator of the refused models that no matching model uses, with how many")
        L.append("refused models use it: the likely full list of what they need (an operator ward")
        L.append("supports but no matching model happens to use is listed too).")
        L.append("")
        L.append("| operator | refused models using it |")
        L.append("|---|---|")
        for op, n in sorted(unseen.items(), key=lambda kv: (-kv[1], kv[0])):
            L.append("| `%s` | %d |" % (op, n))
        L.append("")
    timed = [r for r in results if r["verdict"] == "match" and r.get("ward_predict_s")]
    if timed:
        ratios = sorted(r["ward_predict_s"] / mxnet_s(r) for r in timed)
        L.append("Speed over the %d matching models: a whole `ward predict` takes a median %.2f× MXNet's"
                 % (len(timed), statistics.median(ratios)))
        L.append("load + first forward (%.2f× to %.2f×). Slowest against MXNet:" % (ratios[0], ratios[-1]))
        L.append("")
        slow = sorted(timed, key=lambda r: -r["ward_predict_s"] / mxnet_s(r))[:8]
        for r in slow:
            L.append("- %s/%s: %.2f s vs %.2f s (%.1f×), peak RSS %s for a %s package" % (
                r["zoo"], r["name"], r["ward_predict_s"], mxnet_s(r),
                r["ward_predict_s"] / mxnet_s(r),
                fmt_bytes(r["ward_peak_rss"]), fmt_bytes(r["params_bytes"])))
        L.append("")
    budgeted = [r for r in results if r.get("ward_predict_s") and memory_budget(r)]
    over = sorted((r for r in budgeted if r["ward_peak_rss"] > memory_budget(r)),
                  key=lambda r: -r["ward_peak_rss"] / memory_budget(r))
    if budgeted:
        L.append("Memory over the %d models run: %d within issue 20's budget (the package + 1.5 × the"
                 % (len(budgeted), len(budgeted) - len(over)))
        L.append("largest activation + 100 MB), %d over%s" % (len(over), ":" if over else "."))
        L.append("")
        for r in over:
            L.append("- %s/%s: peak RSS %s, budget %s (package %s, largest activation %s)" % (
                r["zoo"], r["name"], fmt_bytes(r["ward_peak_rss"]), fmt_bytes(memory_budget(r)),
                fmt_bytes(r["package_bytes"]), fmt_bytes(r["largest_activation_bytes"])))
        L.append("")
    names = [r for r in results if r["verdict"] == "match" and r.get("names_match") is False]
    if names:
        L.append("Output names that differ from MXNet's `list_outputs()` (%d models): %s." % (
            len(names), ", ".join("%s/%s" % (r["zoo"], r["name"]) for r in names)))
        L.append("")
    repeats = [r for r in results if r.get("mxnet_names_repeat")]
    if repeats:
        L.append("MXNet's `list_outputs()` repeats a name (%d models: %s): a served model's "
                 "outputs are asked for by name, so ward keeps MXNet's name for the first and "
                 "names a repeat at head k `NAME_k`; those models' names are counted as "
                 "matching when they follow that rule." % (
                     len(repeats), ", ".join("%s/%s" % (r["zoo"], r["name"]) for r in repeats)))
        L.append("")
    if not_run:
        L.append("## Not run")
        L.append("")
        for line in not_run:
            L.append("- %s" % line)
        L.append("")
    L.append("## Models")
    L.append("")
    L.append("| zoo | model | family | verdict | ward predict | MXNet load + first forward | ratio | peak RSS | memory budget | package | notes |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for zoo in ZOOS:
        for r in sorted(by_zoo.get(zoo, []), key=lambda r: r["name"]):
            mxt = mxnet_s(r) if "mxnet_load_s" in r else None
            budget = memory_budget(r)
            rss = r.get("ward_peak_rss")
            wt = r.get("ward_predict_s")
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                zoo, r["name"], r["family"], verdict_text(r),
                "%.2f s" % wt if wt else "", "%.2f s" % mxt if mxt else "",
                "%.2f×" % (wt / mxt) if wt and mxt else "",
                fmt_bytes(rss), ("%s (%s)" % (fmt_bytes(budget), "within" if rss <= budget else "**over**"))
                if budget and rss else "", fmt_bytes(r.get("package_bytes") or r.get("params_bytes")),
                (r.get("note") or "").replace("|", "\\|")))
    L.append("")
    if index:
        L.append("## Every zoo name and the entry that covers it")
        L.append("")
        L.append("Names that differ only in dataset, pretrained weights, depth or width are covered by")
        L.append("one entry (the dedup rule is in `tools/zoo/export_zoo.py`).")
        L.append("")
        for zoo in ZOOS:
            names_ = index.get(zoo, {})
            if not names_:
                continue
            L.append("<details><summary>%s: %d names</summary>" % (ZOO_TITLES[zoo], len(names_)))
            L.append("")
            L.append("| name | covered by |")
            L.append("|---|---|")
            for n, cov in sorted(names_.items()):
                L.append("| %s | %s |" % (n, cov or "**not covered**"))
            L.append("")
            L.append("</details>")
            L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", default=DEFAULT_ZOO, help="the exporter's output folder")
    ap.add_argument("--ward", default=os.environ.get("WARD", os.path.join(ROOT, "target", "release", "ward")))
    ap.add_argument("--only", action="append")
    ap.add_argument("--md", default=os.path.join(ROOT, "docs", "COVERAGE.md"))
    ap.add_argument("--timeout", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--not-run", action="append", default=[], help="a line for the 'Not run' section")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: rewrite the markdown from <zoo>/.ward-run/results.json")
    args = ap.parse_args()

    ward = os.path.abspath(args.ward)
    ver = subprocess.run([ward, "version"], capture_output=True, text=True).stdout
    m = re.search(r"commit:\s*(\S+)", ver)
    ward_version = "`%s` (release build, commit %s)" % (ver.splitlines()[0] if ver else "?", m.group(1) if m else "?")
    work = os.path.join(args.zoo, ".ward-run")
    keys = os.path.join(work, "keys")
    if not args.report_only and not os.path.exists(os.path.join(keys, "zoo.key")):
        subprocess.run([ward, "keygen", "--out", keys, "--name", "zoo", "--audit-log", os.devnull],
                       check=True, capture_output=True)
    results_path = os.path.join(work, "results.json")
    old = {}
    if os.path.exists(results_path):
        old = {(r["zoo"], r["name"]): r for r in json.load(open(results_path))}
    for zoo, name, d, _ in ([] if args.report_only else zoo_cache.models(args.zoo, args.only or ())):
        if zoo not in ZOOS:
            continue
        r = run_model(ward, d, keys, os.path.join(work, "pkg"), args.timeout, args.repeats)
        old[(zoo, name)] = r
        print("%s/%s: %s %s" % (zoo, name, verdict_text(r),
                                "(%.2f s vs %.2f s)" % (r["ward_predict_s"], mxnet_s(r))
                                if r.get("ward_predict_s") else ""), flush=True)
        shutil.rmtree(os.path.join(work, "pkg", zoo, name + ".pred"), ignore_errors=True)
        with open(results_path, "w") as f:
            json.dump(sorted(old.values(), key=lambda r: (r["zoo"], r["name"])), f, indent=1)
    results = sorted(old.values(), key=lambda r: (r["zoo"], r["name"]))
    index = {}
    ip = os.path.join(args.zoo, "index.json")
    if os.path.exists(ip):
        index = json.load(open(ip)).get("zoo_names", {})
    write_markdown(results, args.md, ward_version, args.not_run, index,
                   when=os.path.getmtime(results_path) if os.path.exists(results_path) else None)
    print("wrote %s (%d models)" % (args.md, len(results)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
