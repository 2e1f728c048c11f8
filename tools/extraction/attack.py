#!/usr/bin/env python3
"""Equation-solving model extraction (Tramèr et al., USENIX Security 2016) against a
softmax-regression model served over the Open Inference Protocol v2.

    # against a server (HTTPS, OIP v2 JSON, bearer token)
    .venv-mx/bin/python tools/extraction/attack.py --url https://127.0.0.1:PORT --ca ca.pem \
        --token-file token.txt --model softmax --queries 42
    # without a server: the true weights answer in-process, optionally degraded
    .venv-mx/bin/python tools/extraction/attack.py --oracle local --queries 42 --round 3

Needs only the Python standard library and numpy.

The attack
* draws query points uniformly from the feature box (per-feature min/max of the
  bundled data set, from the --truth meta.json), one point per request (--batch B
  sends B rows per request: same points, same figures, fewer requests);
* for every answer with probabilities p, takes the largest one as the reference r
  and writes one linear equation per other class j with p_j > 0:
      (w_j - w_r) . x + (b_j - b_r) = log p_j - log p_r
  (softmax is invariant to adding a vector to all classes, so w_0 = b_0 = 0 fixes
  the gauge: (K-1)(D+1) unknowns, K-1 equations per fully answered query);
* solves the system by (weighted) least squares.  When the answers are rounded
  (detected from the values), an equation is weighted by 1/sd of its right-hand
  side, sd(log p) ~ half-step / p; zeros cut by top-k carry no equation, rounded-away
  zeros carry none either unless the system is then rank-deficient, in which case
  they are clipped to a quarter rounding step (--zeros auto; or always drop/clip);
* when the system is rank-deficient (label-only answers, heavy rounding, top-1), or
  its solution contradicts the argmax of more than 10 % of the answers (which an
  attacker can see), reports that equation solving failed and falls back to a label-only retraining
  attack (softmax regression fitted to the argmax labels of the same queries).

It always also fits the label-only model on the same queries, for comparison.
Output: one JSON object on stdout (see `report` in main()).
"""

import argparse
import email.utils
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import DATA_CSV, MODEL_DIR, Truth, load_csv, softmax  # noqa: E402

EVAL_SEED = 424242
MIN_CONSISTENCY = 0.9
MAX_BODY_IN_REPORT = 600


class OracleError(Exception):
    """The server answered something the attack cannot use; `detail` goes in the report."""

    def __init__(self, message, detail):
        super().__init__(message)
        self.detail = detail


class QueryStopped(Exception):
    """Querying stopped early (budget exhausted); the attack proceeds with what it has."""


# ---------------------------------------------------------------------------------------
# oracles: answer(x) -> Observation for one row x (float32 values, shape (D,))
# ---------------------------------------------------------------------------------------


class Observation:
    """probs: float64 (K,) with NaN where the answer omits a class; or label only."""

    def __init__(self, probs=None, label=None):
        self.probs = probs
        self.label = int(label) if label is not None else int(np.nanargmax(probs))


class LocalOracle:
    """The true model in-process, as an f32 runtime computes it, degraded like a server would."""

    def __init__(self, truth, round_to=None, top_k=None, label_only=False):
        self.truth, self.round_to, self.top_k, self.label_only = truth, round_to, top_k, label_only
        self.requests = 0
        self.http_429 = 0
        self.sleep_s = 0.0
        self.first_exchange = None

    def answer(self, xs):
        self.requests += 1
        out = []
        for p in self.truth.proba32(xs).astype(np.float64):
            if self.label_only:
                out.append(Observation(label=int(np.argmax(p))))
                continue
            if self.top_k is not None and self.top_k < p.size:
                keep = np.argsort(-p, kind="stable")[: self.top_k]
                q = np.zeros_like(p)
                q[keep] = p[keep]
                p = q
            if self.round_to is not None:
                # what a client parsing "0.123" gets: the decimal value, as a float64
                p = np.round(p, self.round_to)
            out.append(Observation(probs=p))
        return out


def _retry_after_seconds(value):
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _clip(text, n=MAX_BODY_IN_REPORT):
    return text if len(text) <= n else text[:n] + f"... ({len(text)} chars)"


class HttpOracle:
    """OIP v2 JSON over HTTPS, one row per request, honouring 429 Retry-After."""

    def __init__(self, url, model, token, ca, classes, input_name="data", timeout=30.0, max_wait=60.0, insecure=False):
        self.endpoint = url.rstrip("/") + f"/v2/models/{model}/infer"
        self.token = token
        self.classes = classes
        self.input_name = input_name
        self.timeout = timeout
        self.max_wait = max_wait
        if insecure:
            self.ctx = ssl._create_unverified_context()
        else:
            self.ctx = ssl.create_default_context(cafile=ca)
        self.requests = 0
        self.http_429 = 0
        self.sleep_s = 0.0
        self.retry_after_values = []
        self.first_exchange = None
        self.formats = {}

    def _exchange_record(self, body, status, headers, text):
        return {
            "request": {"method": "POST", "url": self.endpoint,
                        "headers": {"Content-Type": "application/json", "Authorization": "Bearer <token>"},
                        "body": _clip(body.decode())},
            "response": {"status": status, "headers": dict(headers or {}), "body": _clip(text)},
        }

    def answer(self, xs):
        """Observations for the rows of xs (one request; rows = 1 unless --batch)."""
        body = json.dumps({"inputs": [{"name": self.input_name, "shape": [int(n) for n in xs.shape],
                                       "datatype": "FP32", "data": [float(v) for v in xs.ravel()]}]}).encode()
        while True:
            req = urllib.request.Request(self.endpoint, data=body, method="POST", headers={
                "Content-Type": "application/json", "Authorization": f"Bearer {self.token}"})
            self.requests += 1
            try:
                with urllib.request.urlopen(req, context=self.ctx, timeout=self.timeout) as resp:
                    status, headers, text = resp.status, resp.headers, resp.read().decode("utf-8", "replace")
            except urllib.error.HTTPError as e:
                status, headers = e.code, e.headers
                text = e.read().decode("utf-8", "replace")
            except (urllib.error.URLError, OSError) as e:
                raise OracleError(f"request failed: {e!r}", self._exchange_record(body, None, None, repr(e)))
            if self.first_exchange is None:
                self.first_exchange = self._exchange_record(body, status, headers, text)
            if status == 429:
                self.http_429 += 1
                raw = headers.get("Retry-After") if headers else None
                wait = _retry_after_seconds(raw)
                self.retry_after_values.append(raw)
                if wait is None:
                    raise OracleError("429 without a usable Retry-After header",
                                      self._exchange_record(body, status, headers, text))
                if wait > self.max_wait:
                    raise QueryStopped(f"429 with Retry-After {raw!r} > --max-wait {self.max_wait}: budget exhausted")
                self.sleep_s += wait
                time.sleep(wait)
                continue
            if status != 200:
                raise OracleError(f"HTTP {status}", self._exchange_record(body, status, headers, text))
            try:
                return self._parse(json.loads(text), xs.shape[0])
            except (ValueError, KeyError, TypeError, IndexError) as e:
                raise OracleError(f"unusable 200 response: {e}", self._exchange_record(body, status, headers, text))

    def _parse(self, doc, rows):
        """Per row: probabilities (K values; zeros/nulls are 'not revealed'), top-k pairs, or a label."""
        outs = doc["outputs"]
        if not isinstance(outs, list) or not outs:
            raise ValueError("no outputs")
        flat = []
        for o in outs:
            data = np.array(o["data"], dtype=object).ravel().tolist()
            flat.append((o.get("name"), str(o.get("datatype", "")).upper(), data))
        fp = [f for f in flat if f[1].startswith("FP")]
        ints = [f for f in flat if f[1].startswith(("INT", "UINT"))]
        k = self.classes

        def as_float(v):
            return np.nan if v is None else float(v)

        def count(fmt):
            self.formats[fmt] = self.formats.get(fmt, 0) + rows

        # full (or top-k-zeroed) probability vectors
        full = [f for f in fp if len(f[2]) == rows * k]
        if full:
            count("probabilities")
            p = np.array([as_float(v) for v in full[0][2]], dtype=np.float64).reshape(rows, k)
            return [Observation(probs=r) for r in p]
        # top-k as (indices, values)
        if fp and ints and len(fp[0][2]) == len(ints[0][2]) and len(ints[0][2]) % rows == 0 \
                and len(ints[0][2]) < rows * k:
            m = len(ints[0][2]) // rows
            p = np.full((rows, k), np.nan)
            for n, (i, v) in enumerate(zip(ints[0][2], fp[0][2])):
                p[n // m, int(i)] = as_float(v)
            count("topk_pairs")
            return [Observation(probs=r) for r in p]
        # label only
        one = [f for f in flat if len(f[2]) == rows]
        if one:
            count("label")
            return [Observation(label=int(float(v))) for v in one[0][2]]
        raise ValueError(f"cannot interpret outputs {[(n, t, len(d)) for n, t, d in flat]}")


# ---------------------------------------------------------------------------------------
# solving
# ---------------------------------------------------------------------------------------


def detect_rounding(values):
    """The smallest number of decimals K (0..5) all revealed values are multiples of 10^-K.

    The tolerance allows values that went through float32 (relative error ~6e-8)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    for k in range(6):
        if np.all(np.abs(v * 10**k - np.round(v * 10**k)) < max(1e-9, 2e-7 * 10**k)):
            return k
    return None


def equation_solve(xs, probs, classes, zeros="drop"):
    """Least squares over log-probability ratios. Returns (W, b, info) or (None, None, info)."""
    n, d = xs.shape
    k = classes
    nunk = (k - 1) * (d + 1)
    revealed = probs[np.isfinite(probs)]
    decimals = detect_rounding(revealed)
    half = 0.5 * 10.0 ** (-decimals) if decimals is not None else 0.0
    rows, rhs, wts = [], [], []
    dropped_zero = 0
    for x, p in zip(xs, probs):
        p = p.copy()
        known = np.isfinite(p)
        if zeros == "clip" and half > 0:
            # a rounded-away value lies in [0, half): a quarter step is as good a guess as any
            p[known & (p <= 0)] = half / 2
        pos = known & (p > 0)
        dropped_zero += int((known & ~pos).sum())
        if pos.sum() < 2:
            continue
        r = int(np.nanargmax(np.where(pos, p, -np.inf)))
        xa = np.append(x, 1.0)
        sd_r = np.hypot(half / p[r], 1e-6)
        for j in np.flatnonzero(pos):
            if j == r:
                continue
            row = np.zeros(nunk)
            if j > 0:
                row[(j - 1) * (d + 1):j * (d + 1)] += xa
            if r > 0:
                row[(r - 1) * (d + 1):r * (d + 1)] -= xa
            rows.append(row)
            rhs.append(np.log(p[j]) - np.log(p[r]))
            wts.append(1.0 / np.hypot(np.hypot(half / p[j], 1e-6), sd_r))
    info = {"equations": len(rows), "unknowns": nunk, "detected_decimals": decimals,
            "zeros": zeros, "zero_values_without_equation": dropped_zero}
    if not rows:
        info.update(ok=False, rank=0, reason="no query revealed two non-zero probabilities")
        return None, None, info
    a = np.array(rows) * np.array(wts)[:, None]
    y = np.array(rhs) * np.array(wts)
    sol, _, rank, sv = np.linalg.lstsq(a, y, rcond=None)
    info["rank"] = int(rank)
    if rank < nunk:
        info.update(ok=False, reason=f"rank-deficient system: rank {rank} < {nunk} unknowns "
                                     f"({len(rows)} equations from {n} queries)")
        return None, None, info
    info["ok"] = True
    info["condition"] = float(sv[0] / sv[-1])
    if decimals is not None and len(rows) - nunk < max(1, nunk // 10):
        info["warning"] = (f"barely determined ({len(rows)} equations, {nunk} unknowns) from rounded answers: "
                           "the solution fits the rounding noise and is unreliable")
    v = sol.reshape(k - 1, d + 1)
    w = np.vstack([np.zeros(d), v[:, :d]])
    b = np.concatenate([[0.0], v[:, d]])
    return w, b, info


def label_retrain(xs, labels, classes, steps=2000, lr=0.5, l2=1e-3):
    """Label-only retraining: softmax regression fitted to the oracle's argmax labels."""
    n, d = xs.shape
    mu, sd = xs.mean(axis=0), xs.std(axis=0) + 1e-12
    z = (xs - mu) / sd
    onehot = np.eye(classes)[labels]
    w = np.zeros((classes, d))
    b = np.zeros(classes)
    for _ in range(steps):
        g = (softmax(z @ w.T + b) - onehot) / n
        w -= lr * (g.T @ z + l2 * w)
        b -= lr * g.sum(axis=0)
    # back to raw features: w (x - mu)/sd = (w/sd) x - (w/sd) mu
    w_raw = w / sd
    return w_raw, b - w_raw @ mu, {"classes_seen": int(np.unique(labels).size), "steps": steps, "l2": l2}


def evaluate(truth, w, b, x_test, x_uni):
    out = {}
    for name, x in (("test", x_test), ("uniform", x_uni)):
        pt = truth.proba(x)
        pe = softmax(x @ w.T + b)
        out[f"agreement_{name}"] = float((pt.argmax(1) == pe.argmax(1)).mean())
        out[f"max_abs_prob_diff_{name}"] = float(np.abs(pt - pe).max())
    # gauge-free parameter error: differences to class 0
    wt = truth.weight.astype(np.float64)
    bt = truth.bias.astype(np.float64)
    dt = np.hstack([wt[1:] - wt[0], (bt[1:] - bt[0])[:, None]])
    de = np.hstack([w[1:] - w[0], (b[1:] - b[0])[:, None]])
    out["max_abs_param_err"] = float(np.abs(dt - de).max())
    return out


def run_attack(oracle, truth, n_queries, seed, zeros="auto", x_test=None, n_uniform=10000, fallback=True,
               batch=1):
    rng = np.random.default_rng(seed)
    lo, hi = truth.feature_min, truth.feature_max
    xs, obs = [], []
    stopped = None
    error = None
    t0 = time.time()
    while len(xs) < n_queries:
        rows = min(batch, n_queries - len(xs))
        x = (lo + (hi - lo) * rng.random((rows, truth.d))).astype(np.float32)
        try:
            o = oracle.answer(x)
        except QueryStopped as e:
            stopped = str(e)
            break
        except OracleError as e:
            error = {"message": str(e), **e.detail}
            break
        xs.extend(x.astype(np.float64))
        obs.extend(o)
    elapsed = time.time() - t0
    rep = {
        "queries": len(xs),
        "budget": n_queries,
        "rows_per_request": batch,
        "requests": oracle.requests,
        "http_429": oracle.http_429,
        "retry_after_slept_s": round(oracle.sleep_s, 3),
        "query_seconds": round(elapsed, 3),
    }
    if getattr(oracle, "retry_after_values", None):
        rep["retry_after_values"] = sorted(set(map(str, oracle.retry_after_values)))
    if getattr(oracle, "formats", None):
        rep["response_formats"] = oracle.formats
    if stopped:
        rep["stopped"] = stopped
    if error:
        rep["error"] = error
    if not xs:
        rep["method"] = "none"
        return rep
    xs = np.array(xs)
    labels = np.array([o.label for o in obs])
    have_probs = [o.probs is not None for o in obs]
    eval_rng = np.random.default_rng(EVAL_SEED)
    x_uni = truth.feature_min + (truth.feature_max - truth.feature_min) * eval_rng.random((n_uniform, truth.d))
    if x_test is None:
        x_test = load_csv()["test"][0]

    if all(have_probs):
        probs = np.array([o.probs for o in obs])
        w, b, info = equation_solve(xs, probs, truth.k, zeros="drop" if zeros == "auto" else zeros)
        if w is None and zeros == "auto" and info.get("detected_decimals") is not None \
                and info.get("zero_values_without_equation", 0) > 0:
            first = info
            w, b, info = equation_solve(xs, probs, truth.k, zeros="clip")
            info["first_try"] = {k_: first[k_] for k_ in ("zeros", "equations", "rank", "reason") if k_ in first}
    else:
        w, b, info = None, None, {"ok": False, "reason": "answers carry labels only, no probabilities"}
    if w is not None:
        # An attacker-side sanity check: an exactly or barely determined system built from
        # clipped zeros "solves" but can be garbage. The answers' own argmax tells.
        info["query_label_consistency"] = float(((xs @ w.T + b).argmax(1) == labels).mean())
        if info["query_label_consistency"] < MIN_CONSISTENCY:
            info.update(ok=False, reason=f"solution contradicts the argmax of {100 * (1 - info['query_label_consistency']):.0f} % "
                                         f"of the answers (threshold {100 * (1 - MIN_CONSISTENCY):.0f} %)")
            info.update({f"rejected_{k_}": v_ for k_, v_ in evaluate(truth, w, b, x_test, x_uni).items()
                         if k_.startswith("agreement")})
            w = b = None
    rep["equation_solving"] = info
    if w is not None:
        rep["equation_solving"].update(evaluate(truth, w, b, x_test, x_uni))
    lw, lb, linfo = label_retrain(xs, labels, truth.k)
    linfo.update(evaluate(truth, lw, lb, x_test, x_uni))
    rep["label_retrain"] = linfo
    if w is not None:
        rep["method"] = "equation_solving"
        src = rep["equation_solving"]
    elif fallback:
        rep["method"] = "label_retrain (equation solving failed)"
        src = linfo
    else:
        rep["method"] = "none (equation solving failed)"
        return rep
    for key in ("agreement_test", "agreement_uniform", "max_abs_prob_diff_test", "max_abs_prob_diff_uniform"):
        rep[key] = src[key]
    return rep


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--oracle", choices=["http", "local"], default="http")
    ap.add_argument("--url", help="https://HOST:PORT (http oracle)")
    ap.add_argument("--ca", help="CA certificate (PEM) that signed the server's certificate")
    ap.add_argument("--insecure", action="store_true", help="do not verify the server (debugging only)")
    ap.add_argument("--token", help="bearer token (or --token-file, or $WARD_TOKEN)")
    ap.add_argument("--token-file")
    ap.add_argument("--model", default="softmax")
    ap.add_argument("--input-name", default="data")
    ap.add_argument("--queries", type=int, default=42, help="query budget (rows sent)")
    ap.add_argument("--batch", type=int, default=1,
                    help="rows per request (default 1: one query point per request)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--truth", default=MODEL_DIR, help="fixture dir with true-weight.npy, true-bias.npy, meta.json")
    ap.add_argument("--data", default=DATA_CSV, help="CSV whose test rows measure agreement")
    ap.add_argument("--zeros", choices=["auto", "drop", "clip"], default="auto",
                    help="rounded-away zero probabilities: no equation (drop), clipped to a quarter rounding "
                         "step (clip), or drop unless that leaves the system rank-deficient (auto). Zeros in "
                         "unrounded answers (top-k) never give an equation")
    ap.add_argument("--no-fallback", action="store_true", help="no label-only fallback when equation solving fails")
    ap.add_argument("--uniform-points", type=int, default=10000)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per HTTP request")
    ap.add_argument("--max-wait", type=float, default=60.0,
                    help="longest Retry-After honoured; a longer one ends the querying (budget exhausted)")
    ap.add_argument("--round", type=int, dest="round_to", help="local oracle: round probabilities to K decimals")
    ap.add_argument("--top-k", type=int, help="local oracle: reveal only the K largest probabilities")
    ap.add_argument("--label-only", action="store_true", help="local oracle: reveal only the argmax")
    ap.add_argument("--show-weights", action="store_true", help="include the extracted weights in the report")
    args = ap.parse_args(argv)

    truth = Truth(args.truth)
    x_test = load_csv(args.data)["test"][0]
    if args.oracle == "local":
        oracle = LocalOracle(truth, args.round_to, args.top_k, args.label_only)
        target = {"oracle": "local", "round": args.round_to, "top_k": args.top_k, "label_only": args.label_only}
    else:
        if not args.url:
            ap.error("--url is required with --oracle http")
        token = args.token
        if token is None and args.token_file:
            with open(args.token_file) as f:
                token = f.read().strip()
        token = token or os.environ.get("WARD_TOKEN")
        if not token:
            ap.error("a token is required (--token, --token-file or $WARD_TOKEN)")
        if not args.ca and not args.insecure:
            ap.error("--ca is required (or --insecure)")
        oracle = HttpOracle(args.url, args.model, token, args.ca, truth.k, args.input_name,
                            args.timeout, args.max_wait, args.insecure)
        target = {"oracle": "http", "url": args.url, "model": args.model}
    rep = {"target": target, "classes": truth.k, "features": truth.d,
           "unknowns": (truth.k - 1) * (truth.d + 1), "seed": args.seed}
    rep.update(run_attack(oracle, truth, args.queries, args.seed, args.zeros, x_test,
                          args.uniform_points, not args.no_fallback, args.batch))
    if oracle.first_exchange is not None:
        rep["first_exchange"] = oracle.first_exchange
    json.dump(rep, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 2 if "error" in rep else 0


if __name__ == "__main__":
    sys.exit(main())
