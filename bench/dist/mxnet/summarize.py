"""MXNet's own table from the workers' JSON files: summarize.py DIR, where DIR/rep*/ hold
train.py's per-worker results (one rep* directory per repetition), e.g.
    python3 bench/dist/mxnet/summarize.py bench/out/dist/mxnet
One row per configuration: aggregate samples/s (the sum over the workers) median (min-max)
over the repetitions, and per-worker medians of steps/s, CPU ms/step and TCP bytes/step.

MXNet 1.9.1's baseline harness for ward's `ward cluster` benchmark (bench/dist/README.md),
copied from mxnet-dist-bench/summarize.py beside the reference notes mxnet-distributed.md
(sections 1-2). Changed: this header only (the path was already an argument). Standard
library only; bench/dist/report.py compares ward's runs with MXNet's.
"""
import json, glob, collections, statistics, sys
runs = collections.defaultdict(list)   # (config) -> list of per-rep lists
for f in sorted(glob.glob(sys.argv[1] + '/rep*/*.json')):
    r = json.load(open(f))
    rep = f.split('/')[-2]
    key = (r['kvstore'], r['model'], r.get('api', 'trainer'), r['compress'], r.get('servers', 0), r['batch'])
    runs[(key, rep)].append(r)
agg = collections.defaultdict(list)
for (key, rep), rs in runs.items():
    agg[key].append(rs)
print('| kvstore | model | api | compress | servers | workers | batch | reps | aggregate samples/s median (min-max) | steps/s per worker | worker CPU ms/step | TCP sent/step/worker | TCP recv/step/worker | params (fp32 bytes) |')
print('|---|---|---|---|---|---|---|---|---|---|---|---|---|---|')
for key, reps in sorted(agg.items()):
    tots = [sum(r['samples_per_s'] for r in rs) for rs in reps]
    allr = [r for rs in reps for r in rs]
    sps = statistics.median(r['samples_per_s'] / r['batch'] for r in allr)
    cpu = statistics.median(r.get('worker_cpu_ms_per_step', 0) for r in allr)
    sent = statistics.median(r['tcp_sent_per_step'] for r in allr)
    recv = statistics.median(r['tcp_recv_per_step'] for r in allr)
    kv, m, api, c, s, b = key
    print('| %s | %s | %s | %s | %d | %d | %d | %d | %.0f (%.0f-%.0f) | %.1f | %.1f | %d | %d | %d (%d) |' % (
        kv, m, api, c, s, len(reps[0]), b, len(reps), statistics.median(tots), min(tots), max(tots),
        sps, cpu, sent, recv, allr[0]['params'], allr[0]['param_bytes']))
