#!/usr/bin/env python3
"""Start 1 scheduler + NS servers + NW workers of MXNet's dist kvstore on 127.0.0.1.

usage: launch_local.py NS NW -- python train.py ARGS...
Fixed ports (scheduler 19091, servers 191xx, workers 192xx) so captures can be
filtered to this job only.  Every child is killed after --timeout seconds.
Reports wall time, total CPU seconds of all children, and the workers' RESULT lines.

MXNet 1.9.1's baseline harness for ward's `ward cluster` benchmark (bench/dist/README.md),
copied from mxnet-dist-bench/launch_local.py beside the reference notes
mxnet-distributed.md (sections 1-2). The environment each role gets (127.0.0.1 only,
OMP_NUM_THREADS=1, MXNET_CPU_WORKER_NTHREADS=1) and the ports are the reference's.
Changed:
  * LOGDIR defaults to bench/out/dist/logs/last (was a temporary directory);
  * no orphans: a child that fails makes the others be killed at once (MXNet has no
    heartbeats by default, so the rest would wait forever), and SIGTERM/SIGINT/SIGHUP
    kill every child before exiting (T, the kill timer, is as before);
  * SUMMARY=FILE also writes the JOB line's JSON to FILE, with `workers` the number of
    workers and their RESULT lines under `worker_results`, the per-worker TCP bytes per
    step averaged (tcp_sent_per_worker_step, tcp_recv_per_worker_step), `complete`, and
    the keys of the environment variable SUMMARY_EXTRA (a JSON object) merged in.
Nothing here touches what the workers time (train.py times its own loop).
"""
import json, os, resource, signal, subprocess, sys, time

ns, nw = int(sys.argv[1]), int(sys.argv[2])
timeout = float(os.environ.get('T', '240'))
cmd = sys.argv[sys.argv.index('--') + 1:]
here = os.path.dirname(os.path.abspath(__file__))
logdir = os.environ.get('LOGDIR', os.path.join(here, '..', '..', 'out', 'dist', 'logs', 'last'))
PB = int(os.environ.get('PB', '19000'))  # port base
os.makedirs(logdir, exist_ok=True)
base = dict(os.environ, DMLC_PS_ROOT_URI='127.0.0.1', DMLC_PS_ROOT_PORT=str(PB + 91),
            DMLC_NUM_SERVER=str(ns), DMLC_NUM_WORKER=str(nw),
            DMLC_NODE_HOST='127.0.0.1', DMLC_INTERFACE='lo',
            OMP_NUM_THREADS='1', MXNET_CPU_WORKER_NTHREADS='1')
procs = []


def kill_all(why):
    for role, i, p, f in procs:
        if p.poll() is None:
            print('%s: killing %s%d pid %d' % (why, role, i, p.pid), flush=True)
            p.kill()
    for role, i, p, f in procs:
        p.wait()


def on_signal(signum, frame):
    kill_all('signal %d' % signum)
    sys.exit(128 + signum)


for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    signal.signal(s, on_signal)


def start(role, i, port):
    env = dict(base, DMLC_ROLE=role)
    if port:
        env['PORT'] = str(port)
    f = open('%s/%s%d.log' % (logdir, role, i), 'w')
    procs.append((role, i, subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT), f))


load0 = os.getloadavg()[0]
t0 = time.time()
start('scheduler', 0, None)
for i in range(ns):
    start('server', i, PB + 101 + i)
for i in range(nw):
    start('worker', i, PB + 201 + i)
rc = 0
while None in [p.poll() for _, _, p, _ in procs]:   # poll every child (any() would stop early)
    failed = [(role, i, p.returncode) for role, i, p, _ in procs if p.returncode not in (None, 0)]
    if failed:
        print('FAILED: %s' % ', '.join('%s%d rc %d' % f for f in failed), flush=True)
        kill_all('after a failure')
        rc = 1
        break
    if time.time() - t0 > timeout:
        print('TIMEOUT after %.0f s' % timeout, flush=True)
        kill_all('TIMEOUT')
        rc = 124
        break
    time.sleep(0.1)
for role, i, p, f in procs:
    if rc == 0:
        rc |= p.returncode
    f.close()
wall = time.time() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
results = []
for role, i, p, f in procs:
    for line in open('%s/%s%d.log' % (logdir, role, i)):
        if line.startswith('RESULT '):
            results.append(json.loads(line[7:]))
summary = dict(ns=ns, nw=nw, rc=rc, wall_s=round(wall, 2), cpu_s=round(ru.ru_utime + ru.ru_stime, 2),
               load1_before=load0, load1_after=os.getloadavg()[0],
               aggregate_samples_per_s=round(sum(r['samples_per_s'] for r in results), 1),
               workers=results)
print('JOB ' + json.dumps(summary))
if os.environ.get('SUMMARY'):
    full = dict(summary, worker_results=summary['workers'])  # 'workers' becomes a count below
    full.update(json.loads(os.environ.get('SUMMARY_EXTRA') or '{}'))
    full['workers'] = nw
    if results:
        full['tcp_sent_per_worker_step'] = round(sum(r['tcp_sent_per_step'] for r in results) / len(results))
        full['tcp_recv_per_worker_step'] = round(sum(r['tcp_recv_per_step'] for r in results) / len(results))
    full['complete'] = rc == 0 and len(results) == nw
    with open(os.environ['SUMMARY'], 'w') as out:
        json.dump(full, out, indent=1)
        out.write('\n')
sys.exit(rc)
