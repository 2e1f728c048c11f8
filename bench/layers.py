#!/usr/bin/env python3
"""Per-layer times of one model, ward against MXNet 1.9.1 (issue 18's table).

    layers.py mxnet DIR THREADS ITERS OUT.json
        MXNet's operator times for the model exported in DIR (model-symbol.json,
        model-0000.params, input.npy), run as bench/mxnet_models.py times it
        (SymbolBlock.imports, hybridize(static_alloc, static_shape)), with MXNet's
        profiler on, bulk execution off so that each operator is its own event, and the
        NaiveEngine so that operators run in the symbol's order. One entry per operator
        node, in execution order: its name, operator and median ms.
    layers.py table DIR WARD.json MXNET.json [--by-kind]
        Markdown: each layer (a convolution, dense layer or pooling with the batch norms,
        activations and joins that follow it) with MXNet's and ward's ms. ward's steps
        (from `WARD_BENCH_LAYERS=WARD.json ward-bench ...`) are matched to MXNet's nodes
        by name: tract names each step after the graph node it comes from, which keeps
        MXNet's node name. With --by-kind, layers are summed by kind (1×1, 3×3,
        depthwise, ...).

The profiler adds a few microseconds per operator to MXNet's times; ward's per-step
times carry the same kind of overhead (one clock read per step).
"""
import json
import os
import statistics
import sys
from collections import OrderedDict, defaultdict

ANCHORS = {"Convolution", "FullyConnected", "Pooling"}


def mxnet_nodes(d):
    with open(os.path.join(d, "model-symbol.json")) as f:
        graph = json.load(f)
    return [n for n in graph["nodes"] if n["op"] != "null"]


def profile_mxnet(d, threads, iters, out):
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MXNET_CPU_WORKER_NTHREADS"] = str(threads)
    # One event per operator: MXNet otherwise runs a hybridized graph in bulk segments.
    os.environ["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"
    os.environ["MXNET_EXEC_BULK_EXEC_TRAIN"] = "0"
    # Operators in the graph's order, one at a time: the threaded engine may run the
    # branches of a block (SqueezeNet's fire modules, Inception's towers) in another
    # order than the symbol's, and the events name only the operator, not the node.
    os.environ["MXNET_ENGINE_TYPE"] = "NaiveEngine"
    import mxnet as mx
    import numpy as np

    net = mx.gluon.SymbolBlock.imports(os.path.join(d, "model-symbol.json"), ["data"],
                                       os.path.join(d, "model-0000.params"))
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.array(np.load(os.path.join(d, "input.npy")))
    for _ in range(3):
        net(x).wait_to_read()
    trace = out + ".trace"
    mx.profiler.set_config(profile_symbolic=True, profile_imperative=True, filename=trace)
    mx.profiler.set_state("run")
    for _ in range(iters):
        net(x).wait_to_read()
    mx.nd.waitall()
    mx.profiler.set_state("stop")
    mx.profiler.dump()
    with open(trace) as f:
        events = [e for e in json.load(f)["traceEvents"] if e.get("cat") == "operator"]
    os.remove(trace)
    # Pair each begin with its end, per thread, in order.
    open_at, spans = {}, []
    for e in events:
        key = (e["pid"], e["tid"], e["name"])
        if e["ph"] == "B":
            open_at[key] = e["ts"]
        elif e["ph"] == "E" and key in open_at:
            start = open_at.pop(key)
            spans.append((start, e["name"], e["ts"] - start))
    # The NaiveEngine records each operator twice, with one start: keep the longer.
    longest = {}
    for start, name, us in spans:
        longest[(start, name)] = max(us, longest.get((start, name), 0))
    spans = sorted((start, name, us) for (start, name), us in longest.items())
    nodes = mxnet_nodes(d)
    # MXNet's engine bookkeeping is no node's; a one-node bulk segment (the first
    # convolution, the dense layer) is reported as ImperativeBulk.
    spans = [s for s in spans if s[1] not in ("WaitForVar", "DeleteVariable")]
    # The spans hold the nodes' operators in the symbol's order, once per run, among
    # events of no node: walk both, taking each span that is the next node's operator.
    durations = [[] for _ in nodes]
    i = runs = 0
    for _, name, us in spans:
        if name in (nodes[i]["op"], "ImperativeBulk"):
            durations[i].append(us)
            i += 1
            if i == len(nodes):
                i, runs = 0, runs + 1
    if runs == 0:
        sys.exit(f"layers.py: MXNet's {len(spans)} operator events do not hold the "
                 f"{len(nodes)} operators of the symbol in its order")
    result = []
    for node, us in zip(nodes, durations):
        result.append({"name": node["name"], "operator": node["op"],
                       "ms": statistics.median(us[:runs]) / 1e3,
                       "attrs": node.get("attrs", {})})
    with open(out, "w") as f:
        json.dump({"runs": runs, "nodes": result}, f)


def kind(node):
    op, a = node["operator"], node.get("attrs", {})
    if op == "Convolution":
        k = a.get("kernel", "").strip("()").replace(", ", "×").replace(",", "×")
        s = a.get("stride", "(1, 1)").strip("()").split(",")[0].strip() or "1"
        group = int(a.get("num_group", "1"))
        where = " depthwise" if group > 1 else ""
        return f"conv {k}{where}" + (f" /{s}" if s != "1" else "")
    if op == "Pooling":
        return f"{a.get('pool_type', 'max')} pool" + (" (global)" if a.get("global_pool") == "True" else "")
    if op == "FullyConnected":
        return "dense"
    return op


def table(d, ward_path, mxnet_path, by_kind):
    with open(ward_path) as f:
        ward = json.load(f)
    with open(mxnet_path) as f:
        mx_nodes = json.load(f)["nodes"]
    # Each MXNet node's layer: the last anchor at or before it.
    layer_of, layers = {}, OrderedDict()
    current = None
    for n in mx_nodes:
        if n["operator"] in ANCHORS or current is None:
            current = n["name"]
            layers[current] = {"kind": kind(n), "mxnet": 0.0, "ward": 0.0, "ops": []}
        layer_of[n["name"]] = current
        layers[current]["mxnet"] += n["ms"]
    names = sorted(layer_of, key=len, reverse=True)
    unmatched = 0.0
    for step in ward["layers"]:
        owner = next((n for n in names if step["name"] == n
                      or any(step["name"].startswith(n + sep) for sep in "./_#")), None)
        if owner is None:
            unmatched += step["ms"]
            continue
        layer = layers[layer_of[owner]]
        layer["ward"] += step["ms"]
        if step["operator"] not in layer["ops"]:
            layer["ops"].append(step["operator"])
    if by_kind:
        kinds = OrderedDict()
        for layer in layers.values():
            k = kinds.setdefault(layer["kind"], {"n": 0, "mxnet": 0.0, "ward": 0.0, "ops": []})
            k["n"] += 1
            k["mxnet"] += layer["mxnet"]
            k["ward"] += layer["ward"]
            k["ops"] += [o for o in layer["ops"] if o not in k["ops"]]
        print("| kind | layers | MXNet ms | ward ms | ward / MXNet | ward's operators |")
        print("|---|---:|---:|---:|---:|---|")
        for name, k in sorted(kinds.items(), key=lambda kv: -kv[1]["ward"]):
            ratio = k["ward"] / k["mxnet"] if k["mxnet"] else float("nan")
            print(f"| {name} | {k['n']} | {k['mxnet']:.2f} | {k['ward']:.2f} | {ratio:.2f}× | "
                  f"{', '.join(k['ops'])} |")
    else:
        print("| layer | kind | MXNet ms | ward ms | ward / MXNet | ward's operators |")
        print("|---|---|---:|---:|---:|---|")
        for name, layer in layers.items():
            ratio = layer["ward"] / layer["mxnet"] if layer["mxnet"] else float("nan")
            print(f"| {name} | {layer['kind']} | {layer['mxnet']:.3f} | {layer['ward']:.3f} | "
                  f"{ratio:.2f}× | {', '.join(layer['ops'])} |")
    total_mx = sum(layer["mxnet"] for layer in layers.values())
    total_ward = sum(layer["ward"] for layer in layers.values()) + unmatched
    print(f"| **total** | | {total_mx:.2f} | {total_ward:.2f} | {total_ward / total_mx:.2f}× | "
          f"(ward steps not named after an MXNet node: {unmatched:.2f} ms) |")


def main(argv):
    if len(argv) == 6 and argv[1] == "mxnet":
        profile_mxnet(argv[2], int(argv[3]), int(argv[4]), argv[5])
    elif len(argv) in (5, 6) and argv[1] == "table":
        table(argv[2], argv[3], argv[4], argv[5:] == ["--by-kind"])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
