"""Small MXNet kvstore benchmark: MLP or LeNet on synthetic data.

Every role runs this same file.  For DMLC_ROLE=server/scheduler, `import mxnet`
never returns (mxnet.kvstore.kvstore_server runs the server loop and exits).

MXNet 1.9.1's baseline harness for ward's `ward cluster` benchmark (bench/dist/README.md),
copied from mxnet-dist-bench/train.py beside the reference notes mxnet-distributed.md
(sections 1-2). Changed: this paragraph, and the default of --out (bench/out/dist/mxnet/results
instead of a temporary directory). The model, the data generator, the optimizer, the timing
and the `ss` byte counting are the reference's, unchanged, so the figures stay comparable.
"""
import argparse, json, os, re, subprocess, sys, time

import mxnet as mx
from mxnet import autograd, gluon, nd

p = argparse.ArgumentParser()
p.add_argument('--kvstore', default='dist_sync')
p.add_argument('--model', default='mlp', choices=['mlp', 'lenet', 'bigmlp'])
p.add_argument('--batch', type=int, default=128)
p.add_argument('--steps', type=int, default=100)
p.add_argument('--warmup', type=int, default=10)
p.add_argument('--compress', default='none')   # 'none' or '2bit'
p.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'out', 'dist', 'mxnet', 'results'))
p.add_argument('--api', default='trainer', choices=['trainer', 'kv'])  # kv: explicit push/pull (Module style)
args = p.parse_args()

mx.random.seed(42)
import numpy as np

kv = mx.kv.create(args.kvstore)
rank, nworkers = kv.rank, kv.num_workers
np.random.seed(1000 + rank)
if args.compress != 'none':
    kv.set_gradient_compression({'type': args.compress, 'threshold': 0.5})

if args.model == 'lenet':
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Conv2D(20, 5, activation='tanh'), gluon.nn.MaxPool2D(2, 2),
            gluon.nn.Conv2D(50, 5, activation='tanh'), gluon.nn.MaxPool2D(2, 2),
            gluon.nn.Flatten(), gluon.nn.Dense(500, activation='tanh'), gluon.nn.Dense(10))
    shape = (args.batch, 1, 28, 28)
else:
    hidden = 2048 if args.model == 'bigmlp' else 512
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(hidden, activation='relu'), gluon.nn.Dense(256, activation='relu'),
            gluon.nn.Dense(10))
    shape = (args.batch, 784)
net.initialize(mx.init.Xavier(), ctx=mx.cpu())
net.hybridize()

# synthetic data from a fixed random "teacher" so that loss can go down
teacher = np.random.RandomState(7).randn(int(np.prod(shape[1:])), 10).astype('float32')
def batch():
    x = np.random.randn(*shape).astype('float32')
    y = (x.reshape(shape[0], -1) @ teacher).argmax(1).astype('float32')
    return nd.array(x), nd.array(y)

if args.compress != 'none':
    args.api = 'kv'   # 1.9.1: Gluon Trainer uses pushpull, which rejects gradient compression
if args.api == 'trainer':
    trainer = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.05, 'momentum': 0.9}, kvstore=kv)
else:
    params = list(net.collect_params().values())
    net(batch()[0])  # materialise deferred shapes
    kv.set_optimizer(mx.optimizer.SGD(learning_rate=0.05, momentum=0.9,
                                      rescale_grad=1.0 / args.batch))
    for i, p_ in enumerate(params):
        kv.init(i, p_.data())
        kv.pull(i, out=p_.data(), priority=-i)
loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
batches = [batch() for _ in range(8)]

def ss_bytes():
    """bytes_sent/bytes_received over this process's TCP sockets (from `ss`)."""
    out = subprocess.run(['ss', '-tinpH'], capture_output=True, text=True).stdout
    sent = recv = 0
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if 'pid=%d,' % os.getpid() in line and i + 1 < len(lines):
            info = lines[i + 1]
            m = re.search(r'bytes_sent:(\d+)', info); sent += int(m.group(1)) if m else 0
            m = re.search(r'bytes_received:(\d+)', info); recv += int(m.group(1)) if m else 0
    return sent, recv

def step(i):
    x, y = batches[i % len(batches)]
    with autograd.record():
        loss = loss_fn(net(x), y)
    loss.backward()
    if args.api == 'trainer':
        trainer.step(args.batch)
    else:
        for j, p_ in enumerate(params):
            kv.push(j, p_.grad(), priority=-j)
            kv.pull(j, out=p_.data(), priority=-j)
    return loss

for i in range(args.warmup):
    step(i).wait_to_read()
nd.waitall()
s0, r0 = ss_bytes()
t0 = time.time(); c0 = time.process_time()
for i in range(args.steps):
    l = step(i)
l.wait_to_read(); nd.waitall()
# make sure the weights are actually pulled back before we stop the clock
for p_ in net.collect_params().values():
    p_.data().wait_to_read()
dt = time.time() - t0; cpu = time.process_time() - c0
s1, r1 = ss_bytes()
nparams = sum(int(np.prod(p_.shape)) for p_ in net.collect_params().values())
res = dict(kvstore=args.kvstore, model=args.model, rank=rank, workers=nworkers,
           batch=args.batch, steps=args.steps, seconds=round(dt, 3),
           samples_per_s=round(args.batch * args.steps / dt, 1),
           params=nparams, param_bytes=nparams * 4,
           tcp_sent_per_step=round((s1 - s0) / args.steps),
           tcp_recv_per_step=round((r1 - r0) / args.steps),
           final_loss=float(l.mean().asscalar()), compress=args.compress, api=args.api,
           servers=int(os.environ.get('DMLC_NUM_SERVER', '0')),
           worker_cpu_ms_per_step=round(1000 * cpu / args.steps, 2),
           bigarray_bound=int(os.environ.get('MXNET_KVSTORE_BIGARRAY_BOUND', '1000000')))
print('RESULT ' + json.dumps(res), flush=True)
os.makedirs(args.out, exist_ok=True)
with open(os.path.join(args.out, '%s_%s_%s%s_s%s_r%d.json' % (args.kvstore, args.model, args.compress, '' if args.api == 'trainer' else '_kvapi', os.environ.get('DMLC_NUM_SERVER', '0'), rank)), 'w') as f:
    json.dump(res, f)
