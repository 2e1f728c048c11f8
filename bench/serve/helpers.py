"""Small helpers for bench/serve/run.sh (standard library only; any python3 runs them).

  freeport [N]                  print N free loopback TCP ports below 10000 (default 1)
  check EXPECTED.json REPLY     check an OIP JSON reply (outputs[0]) against MXNet's own
                                output (tolerance: the servers round to 3 decimals)
  mem PID                       one JSON line: peak (VmHWM) and current RSS of PID and of all
                                its descendants, and their PSS (shared pages split fairly)
  mms-workers URL               one line per model: name, workers and their status, from
                                MMS's management API (URL = http://127.0.0.1:PORT)
  cpu PID                       "wall_s busy_s tree_s": now, CPU seconds the whole machine
                                has been busy, CPU seconds of PID's live process tree
  point LOG SERVER MODEL CONNS KIND CPU0 CPU1 WRK_TIMES
                                the JSON result line of one point (stdout) from wrk's
                                WRK_RESULT line, and a progress line (stderr)
  report RESULTS.jsonl META.tsv write the Markdown report to stdout
"""
import json
import os
import socket
import sys
import urllib.request


def freeport(n=1):
    """Free ports below 10000: MMS 1.1.11 refuses a 5-digit port in its addresses
    ("Invalid port number"), so the kernel's ephemeral ports will not do."""
    import random

    found = []
    for port in random.sample(range(8100, 9000), 900):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        found.append(port)
        if len(found) == int(n):
            break
    for port in found:
        print(port)


def check(expected_path, reply_path):
    with open(expected_path) as f:
        exp = json.load(f)
    with open(reply_path, "rb") as f:
        raw = f.read()
    try:
        reply = json.loads(raw)
        out = reply["outputs"][0]
        data = [float(v) for v in out["data"]]
        shape = list(out["shape"])
    except Exception as e:  # noqa: BLE001
        sys.exit(f"reply is not an OIP JSON inference reply ({e}): {raw[:300]!r}")
    if shape != exp["shape"] or len(data) != len(exp["data"]):
        sys.exit(f"reply shape {shape}, expected {exp['shape']}")
    worst = max(abs(a - b) for a, b in zip(data, exp["data"]))
    bad = [i for i, (a, b) in enumerate(zip(data, exp["data"]))
           if abs(a - b) > 1.5e-3 + 1e-3 * abs(b)]
    if bad:
        sys.exit(f"reply differs from MXNet at {len(bad)} of {len(data)} values "
                 f"(max |diff| {worst:.3g}, first at {bad[0]})")
    print(f"ok: {shape}, max |diff| from MXNet {worst:.2g}")


def _status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(root):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def mem(pid):
    pid = int(pid)
    kids = _descendants(pid)
    res = {
        "pid": pid,
        "hwm_kib": _status_kib(pid, "VmHWM"),
        "rss_kib": _status_kib(pid, "VmRSS"),
        "pss_kib": _pss_kib(pid),
        "children": len(kids),
        "children_hwm_kib": sum(_status_kib(k, "VmHWM") for k in kids),
        "children_rss_kib": sum(_status_kib(k, "VmRSS") for k in kids),
        "children_pss_kib": sum(_pss_kib(k) for k in kids),
    }
    print(json.dumps(res))


def mms_workers(url):
    with urllib.request.urlopen(url + "/models") as r:
        models = json.load(r)["models"]
    for m in models:
        with urllib.request.urlopen(url + "/models/" + m["modelName"]) as r:
            d = json.load(r)
        if isinstance(d, list):  # some MMS versions answer a list
            d = d[0]
        ws = d.get("workers", [])
        st = ",".join(sorted({w.get("status", "?") for w in ws}))
        print(f"{m['modelName']} workers={len(ws)} status={st} batchSize={d.get('batchSize')}")


def _ticks_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except (OSError, IndexError, ValueError):
        return 0


def cpu(pid):
    import time

    hz = os.sysconf("SC_CLK_TCK")
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    busy = sum(v[:8]) - v[3] - v[4]
    pid = int(pid)
    tree = sum(_ticks_of(p) for p in [pid] + _descendants(pid))
    print(f"{time.monotonic():.3f} {busy / hz:.2f} {tree / hz:.2f}")


def _bash_times(text):
    """Seconds from a line of bash's `times` ("0m1.234s 0m0.567s"): user + system."""
    total = 0.0
    for part in text.split():
        m, _, sec = part.rstrip("s").partition("m")
        total += int(m) * 60 + float(sec)
    return total


def point(log, server, model, conns, kind, cpu0, cpu1, wrk_times):
    with open(log) as f:
        line = [l for l in f if l.startswith("WRK_RESULT ")][-1]
    r = json.loads(line.split(" ", 1)[1])
    (t0, b0, s0), (t1, b1, s1) = ([float(x) for x in c.split()] for c in (cpu0, cpu1))
    wall = max(t1 - t0, 1e-9)
    wrk_s = _bash_times(wrk_times)
    r["cpu_cores"] = {
        "server": round((s1 - s0) / wall, 3),
        "wrk": round(wrk_s / wall, 3),
        "other": round(max(0.0, (b1 - b0) - (s1 - s0) - wrk_s) / wall, 3),
        "machine": os.cpu_count(),
    }
    out = {"server": server, "model": model, "conns": int(conns), "kind": kind}
    out.update(r)
    print(json.dumps(out))
    ok_rps = (r["requests"] - r["non2xx"]) / r["duration_s"]
    c = r["cpu_cores"]
    print(f"   {server:5} {model:14} c={conns:3} {ok_rps:9.1f} req/s (2xx)  p50 {r['p50_ms']:8.2f} ms"
          f"  p99 {r['p99_ms']:8.2f} ms  non-2xx {r['non2xx']}  timeouts {r['errors']['timeout']}"
          f"  cpu: server {c['server']:.2f} wrk {c['wrk']:.2f} other {c['other']:.2f}",
          file=sys.stderr)


def _cores(r, key):
    c = r.get("cpu_cores")
    return f"{c[key]:.2f}" if c else "?"


def _mib(kib):
    return f"{kib / 1024:.0f} MiB"


def report(results_path, meta_path):
    meta = {}
    notes = []
    with open(meta_path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            k, _, v = line.partition("\t")
            if k == "note":
                notes.append(v)
            else:
                meta[k] = v
    rows = []
    if os.path.exists(results_path):
        with open(results_path) as f:
            rows = [json.loads(l) for l in f if l.strip()]
    order = {"mms": 0, "ward-old": 1, "ward": 2, "ward-batched": 3}
    models = []
    for r in rows:
        if r["model"] not in models:
            models.append(r["model"])
    rows.sort(key=lambda r: (models.index(r["model"]), r["kind"] == "overload", r["conns"],
                             order.get(r["server"], 9)))

    p = print
    p(f"# Serving benchmark: ward vs Multi Model Server, {meta.get('date', '?')}")
    p()
    p(f"Machine: {meta.get('machine', '?')}. Client: {meta.get('wrk', 'wrk')} on loopback, "
      f"`-t{meta.get('wrk_threads', '?')}`, {meta.get('warmup', '?')} s warm-up (discarded) "
      f"then {meta.get('duration', '?')} s measured per point, `--timeout "
      f"{meta.get('wrk_timeout', '?')}`, {meta.get('drain', '?')} s pause after each wrk run. Both servers ran in this one run, one after the "
      "other, on the same machine.")
    p()
    p("Servers:")
    p()
    p(f"- **mms**: {meta.get('mms', 'not run')}")
    if "ward-old" in meta:
        p(f"- **ward-old**: {meta['ward-old']}")
    p(f"- **ward**: {meta.get('ward', 'not run')}")
    if "ward-batched" in meta:
        p(f"- **ward-batched**: {meta['ward-batched']}")
    p()
    p("Requests: byte-identical bodies for both servers (OIP v2): the MLP (1x16) as a JSON "
      "body, squeezenet1.1 and resnet18_v1 (1x3x224x224) with the binary tensor extension "
      "(`Inference-Header-Content-Length`, JSON header + 602112 bytes of float32). Both "
      "reply OIP JSON rounded to 3 decimals. Every reply was checked against MXNet's own "
      "output before timing.")
    p()
    p("req/s counts 2xx replies only; p50/p99 are over every reply (a 503 too), so read them "
      "with the non-2xx column. CPU columns are cores busy during the measured run: the "
      "server's processes, and everything else on the machine except wrk (anything but "
      "about 0 there means the numbers were disturbed).")
    p()
    p("| model | conns | server | req/s | p50 ms | p99 ms | non-2xx | socket errors / timeouts "
      "| server CPU | wrk CPU | other CPU |")
    p("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        e = r["errors"]
        errs = e["connect"] + e["read"] + e["write"]
        conns = f"{r['conns']} (overload)" if r["kind"] == "overload" else str(r["conns"])
        non2xx = str(r["non2xx"])
        if r["non2xx"]:
            codes = ", ".join(f"{k}: {v}" for k, v in sorted(r["codes"].items()) if k[0] != "2")
            non2xx += f" ({codes})"
        ok_rps = (r["requests"] - r["non2xx"]) / r["duration_s"]
        p(f"| {r['model']} | {conns} | {r['server']} | {ok_rps:.1f} | {r['p50_ms']:.2f} | "
          f"{r['p99_ms']:.2f} | {non2xx} | {errs} / {e['timeout']} | "
          f"{_cores(r, 'server')} | {_cores(r, 'wrk')} | {_cores(r, 'other')} |")
    p()
    p("Peak memory (VmHWM, after all the points above):")
    p()
    p("| server | peak RSS | processes |")
    p("|---|---:|---|")
    for s in ("mms", "ward-old", "ward", "ward-batched"):
        raw = meta.get(f"mem_{s}")
        if not raw:
            continue
        m = json.loads(raw)
        if s == "mms":
            total = m["hwm_kib"] + m["children_hwm_kib"]
            p(f"| mms | {_mib(total)} | Java frontend {_mib(m['hwm_kib'])} + "
              f"{m['children']} Python worker processes {_mib(m['children_hwm_kib'])} "
              f"(sum of each one's peak; forked workers share pages: PSS now "
              f"{_mib(m['pss_kib'] + m['children_pss_kib'])}) |")
        else:
            p(f"| {s} | {_mib(m['hwm_kib'] + m['children_hwm_kib'])} | one process "
              f"(PSS now {_mib(m['pss_kib'])}) |")
    if notes:
        p()
        p("Notes:")
        p()
        for n in notes:
            p(f"- {n}")


if __name__ == "__main__":
    cmd, args = sys.argv[1] if len(sys.argv) > 1 else "", sys.argv[2:]
    fn = {"freeport": freeport, "check": check, "mem": mem, "mms-workers": mms_workers, "cpu": cpu, "point": point,
          "report": report}.get(cmd)
    if fn is None:
        sys.exit(__doc__)
    fn(*args)
