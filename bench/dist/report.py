"""Median (min-max) table of the distributed benchmark's runs, any engine.

usage: python3 bench/dist/report.py [RUNS_DIR]   (default bench/out/dist/runs)

Reads every RUNS_DIR/*.json run summary (one per run: bench/dist/run_mxnet.sh writes
mxnet_s{S}_rep{K}.json; ward's runs are to be written alike, ward_s{S}_rep{K}.json) with
at least these keys:
    engine, servers, workers, batch, steps, rep, complete,
    aggregate_samples_per_s      sum over the workers of batch x timed steps / timed seconds
    tcp_sent_per_worker_step     TCP bytes a worker sent per timed step (mean over workers)
    tcp_recv_per_worker_step     ... received
and prints, per (engine, servers, workers, batch): the median and min-max of the
aggregate samples/s over the complete runs, the median bytes per worker-step, and how many
runs were incomplete (left out). Standard library only.
"""
import collections
import glob
import json
import os
import statistics
import sys


def main():
    runs = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), '..', 'out', 'dist', 'runs')
    groups = collections.defaultdict(list)
    failed = collections.Counter()
    for path in sorted(glob.glob(os.path.join(runs, '*.json'))):
        with open(path) as f:
            r = json.load(f)
        key = (r['engine'], r['servers'], r['workers'], r['batch'], r['steps'])
        if r.get('complete'):
            groups[key].append(r)
        else:
            failed[key] += 1
    print('| engine | servers | workers | batch/worker | timed steps | runs | aggregate samples/s median (min–max) '
          '| TCP sent B/worker-step (median) | TCP recv B/worker-step (median) | failed runs |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for key in sorted(set(groups) | set(failed)):
        rs = groups.get(key, [])
        engine, servers, workers, batch, steps = key
        if rs:
            sps = [r['aggregate_samples_per_s'] for r in rs]
            cell = '%s (%s–%s)' % tuple(format(round(v), ',') for v in (statistics.median(sps), min(sps), max(sps)))
            sent = format(round(statistics.median(r['tcp_sent_per_worker_step'] for r in rs)), ',')
            recv = format(round(statistics.median(r['tcp_recv_per_worker_step'] for r in rs)), ',')
        else:
            cell = sent = recv = '–'
        print('| %s | %d | %d | %d | %d | %d | %s | %s | %s | %d |' % (
            engine, servers, workers, batch, steps, len(rs), cell, sent, recv, failed[key]))


if __name__ == '__main__':
    main()
