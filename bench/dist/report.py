"""Median (min-max) tables of the distributed benchmark's runs, any engine, and ward vs MXNet.

usage: python3 bench/dist/report.py [RUNS_DIR]   (default bench/out/dist/runs)

Reads every RUNS_DIR/*.json run summary (one per run: bench/dist/run_mxnet.sh writes
mxnet_s{S}_rep{K}.json, bench/dist/run.sh ward_s{S}_rep{K}.json) with at least these keys:
    engine, servers, workers, batch, steps, rep, complete,
    aggregate_samples_per_s      sum over the workers of batch x timed steps / timed seconds
    tcp_sent_per_worker_step     TCP bytes a worker sent per timed step (mean over workers;
                                 null when a ward run's byte counts were left out)
    tcp_recv_per_worker_step     ... received
and prints
  1. per (engine, servers, workers, batch, steps): the median and min-max of the aggregate
     samples/s over the complete runs, the median bytes per worker-step (over the runs that
     have them), and how many runs were incomplete (left out);
  2. per (servers, workers, batch, steps) run by both engines: ward's and MXNet's medians
     side by side, with ward / MXNet of the median aggregate samples/s and of the bytes.
Standard library only.
"""
import collections
import glob
import json
import os
import statistics
import sys


def fmt(v):
    return '–' if v is None else format(round(v), ',')


def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'out', 'dist', 'runs')
    groups = collections.defaultdict(list)
    failed = collections.Counter()
    transport = {}
    for path in sorted(glob.glob(os.path.join(runs, '*.json'))):
        with open(path) as f:
            r = json.load(f)
        key = (r['engine'], r['servers'], r['workers'], r['batch'], r['steps'])
        transport[r['engine']] = r.get('transport', 'plaintext TCP (ZMTP)' if r['engine'] == 'mxnet' else '?')
        if r.get('complete'):
            groups[key].append(r)
        else:
            failed[key] += 1
    stats = {}
    print('| engine | servers | workers | batch/worker | timed steps | runs | aggregate samples/s median (min–max) '
          '| TCP sent B/worker-step (median) | TCP recv B/worker-step (median) | failed runs |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for key in sorted(set(groups) | set(failed)):
        rs = groups.get(key, [])
        engine, servers, workers, batch, steps = key
        sps = [r['aggregate_samples_per_s'] for r in rs]
        sent = median_or_none(r.get('tcp_sent_per_worker_step') for r in rs)
        recv = median_or_none(r.get('tcp_recv_per_worker_step') for r in rs)
        with_bytes = sum(r.get('tcp_sent_per_worker_step') is not None for r in rs)
        if rs:
            med = statistics.median(sps)
            cell = '%s (%s–%s)' % (fmt(med), fmt(min(sps)), fmt(max(sps)))
            stats[key] = (med, cell, sent, recv)
        else:
            cell = '–'
        note = '' if with_bytes == len(rs) else ' (%d of %d runs)' % (with_bytes, len(rs))
        print('| %s | %d | %d | %d | %d | %d | %s | %s%s | %s%s | %d |' % (
            engine, servers, workers, batch, steps, len(rs), cell, fmt(sent), note, fmt(recv), note,
            failed[key]))

    pairs = sorted({k[1:] for k in stats if k[0] == 'ward'} & {k[1:] for k in stats if k[0] == 'mxnet'})
    if not pairs:
        return
    print()
    print('ward (%s) vs MXNet 1.9.1 dist_sync (%s), medians over the complete runs:' % (
        transport.get('ward'), transport.get('mxnet')))
    print()
    print('| servers | workers | batch/worker | ward samples/s | MXNet samples/s | **ward / MXNet** '
          '| ward sent / recv B per worker-step | MXNet sent / recv B per worker-step | ward / MXNet bytes (sent, recv) |')
    print('|---|---|---|---|---|---|---|---|---|')
    for servers, workers, batch, steps in pairs:
        w = stats[('ward', servers, workers, batch, steps)]
        m = stats[('mxnet', servers, workers, batch, steps)]
        ratio = '**%.2f×**' % (w[0] / m[0]) if m[0] else '–'
        if None in (w[2], w[3], m[2], m[3]) or not (m[2] and m[3]):
            bytes_ratio = '–'
        else:
            bytes_ratio = '%.4f, %.4f' % (w[2] / m[2], w[3] / m[3])
        print('| %d | %d | %d | %s | %s | %s | %s / %s | %s / %s | %s |' % (
            servers, workers, batch, w[1], m[1], ratio, fmt(w[2]), fmt(w[3]), fmt(m[2]), fmt(m[3]),
            bytes_ratio))


if __name__ == '__main__':
    main()
