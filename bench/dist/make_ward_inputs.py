"""Writes what `ward cluster` needs to train the job that bench/dist/mxnet/train.py times.

usage (with the MXNet 1.9.1 venv, DEVELOPERS.md):
    .venv-mx/bin/python bench/dist/make_ward_inputs.py OUT [--workers 2] [--batch 128]
        [--steps 200] [--warmup 10] [--model mlp] [--layout shard] [--rescale gluon]

OUT receives:
  model-symbol.json, model-0000.params  the Gluon MLP of train.py, exported with
      HybridBlock.export: the network alone (its output is the logits; no loss head),
      initialised as train.py initialises it (mx.random.seed(42), then Xavier() on the
      first forward). In dist_sync every worker starts from worker 0's weights (only rank 0
      pushes at kv.init), and worker 0 draws exactly these.
  data.npy (float32 [N, 784]), labels.npy (float32 [N])
      N = workers x batch x (warmup + steps): every example MXNet's workers train on, in
      the order they train on them (see `worker_rows` and --layout). ward must not
      shuffle them (train.toml says shuffle = false).
  train.toml  ward's training spec for the same job (see `spec` below).
  inputs.json the settings these files were made with.

Nothing is downloaded.
"""
import argparse
import json
import os

import mxnet as mx
import numpy as np
from mxnet import gluon, nd

HIDDEN = {'mlp': 512, 'bigmlp': 2048}
WIDTH = 784
CLASSES = 10
BATCHES_PER_WORKER = 8   # train.py: `batches = [batch() for _ in range(8)]`, cycled


def mlp(model):
    """train.py's network, built and initialised as train.py does (model mlp or bigmlp)."""
    mx.random.seed(42)
    net = gluon.nn.HybridSequential()
    net.add(gluon.nn.Dense(HIDDEN[model], activation='relu'), gluon.nn.Dense(256, activation='relu'),
            gluon.nn.Dense(CLASSES))
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    net.hybridize()
    # train.py's parameters are materialised (deferred initialisation, Xavier drawn from
    # mx.random in parameter order) by the first forward; nothing else draws from
    # mx.random before it, in either program. The input's values do not matter.
    net(nd.zeros((1, WIDTH)))
    return net


def worker_batches(rank, batch):
    """The 8 batches worker `rank` of train.py generates (train.py's `batch()`)."""
    np.random.seed(1000 + rank)
    teacher = np.random.RandomState(7).randn(WIDTH, CLASSES).astype('float32')
    out = []
    for _ in range(BATCHES_PER_WORKER):
        x = np.random.randn(batch, WIDTH).astype('float32')
        y = (x.reshape(batch, -1) @ teacher).argmax(1).astype('float32')
        out.append((x, y))
    return out


def worker_rows(rank, batch, warmup, steps):
    """Every example worker `rank` trains on, in order: train.py runs step(i) for
    i in range(warmup), then for i in range(steps), and step(i) uses batches[i % 8]."""
    batches = worker_batches(rank, batch)
    order = [i % BATCHES_PER_WORKER for i in range(warmup)] + \
            [i % BATCHES_PER_WORKER for i in range(steps)]
    return (np.concatenate([batches[k][0] for k in order]),
            np.concatenate([batches[k][1] for k in order]))


def spec(a):
    global_batch = a.workers * a.batch
    rescale = 1.0 / a.batch if a.rescale == 'gluon' else 1.0 / global_batch
    layout = {
        'shard': 'worker r reads rows [r*N/W, (r+1)*N/W) (contiguous shards, in file order)',
        'interleave': 'global batch s is rows [s*W*B, (s+1)*W*B); worker r reads its r-th '
                      'part of B rows',
    }[a.layout]
    return f'''# ward training spec for the job MXNet's bench/dist/mxnet/train.py times
# (written by bench/dist/make_ward_inputs.py; paths are relative to this file).
# MXNet: Gluon MLP 784-{HIDDEN[a.model]}-256-10, dist_sync, {a.workers} workers x batch {a.batch},
# gluon.Trainer(sgd, learning_rate 0.05, momentum 0.9), trainer.step({a.batch}),
# SoftmaxCrossEntropyLoss, {a.warmup} warm-up + {a.steps} timed steps per worker.

[model]                            # HybridBlock.export: the network alone, no loss head
symbol = "model-symbol.json"
params = "model-0000.params"       # worker 0's initial weights (Xavier, mx.random.seed(42))

[loss]                             # gluon.loss.SoftmaxCrossEntropyLoss() on the logits
name = "softmax_cross_entropy"

[data]
# PER-WORKER batch: in a cluster the global batch is workers x batch_size = {global_batch}.
batch_size = {a.batch}
# The rows are already in the order MXNet's workers train on them; layout "{a.layout}":
# {layout}.
shuffle = false
# 0: batches are cut on the training thread (train.py trains on batches already in
# memory, with no loader thread).
threads = 0

[data.train]                       # {a.workers * a.batch * (a.warmup + a.steps)} rows = workers x batch x (warm-up + timed steps)
format = "npy"
data = "data.npy"                  # float32 [N, {WIDTH}]
labels = "labels.npy"              # float32 [N], class indices

[optimizer]
name = "sgd"
learning_rate = 0.05
momentum = 0.9
# {rescale_comment(a)}
rescale_grad = {rescale!r}

[run]
epochs = 1                         # one pass = {a.warmup + a.steps} steps per worker
seed = "42"                        # nothing is drawn (no shuffle, no [init]); fixed anyway
threads = 1                        # OMP_NUM_THREADS=1 / MXNET_CPU_WORKER_NTHREADS=1 in MXNet
multipliers = "gluon"              # gluon.Trainer: the parameters' own lr_mult/wd_mult
log_every = 10

# [distributed]                    # PLACEHOLDER, the schema is not final (issue 17):
# servers = 1                      # ward cluster run --servers S
# workers = {a.workers}                      # ward cluster run --workers W
# sync = "sync"                    # as MXNet dist_sync
'''


def rescale_comment(a):
    if a.rescale == 'gluon':
        return f'''1/{a.batch} = 1/(per-worker batch), NOT 1/(global batch): this is what MXNet 1.9.1 does.
# gluon/trainer.py: Trainer.step(batch_size) sets optimizer.rescale_grad =
# self._scale / batch_size (_scale = the optimizer's own rescale_grad, 1.0) BEFORE
# _init_kvstore() pickles the optimizer to the servers (kv.set_optimizer, with
# update_on_kvstore=True, forced for dist kvstores); nothing multiplies batch_size by
# kv.num_workers (Module.init_optimizer and model.py do; the Trainer does not). The dist_sync
# server sums the {a.workers} workers' pushed gradients and runs the updater once on the sum.
# So one MXNet step is  w -= lr * ({grad_sum(a)}) / {a.batch}  (g_r: worker r's gradient
# summed over its {a.batch} examples), i.e. {a.workers} x the mean over the global batch of {global_batch(a)}.
# Checked by running dist_sync (2 workers, batch 128, bench/dist/README.md): the first update
# matches rescale 1/128 to 4e-9 and is twice the one 1/256 gives.
# ward matches it with 1/{a.batch} if its servers, like MXNet's, apply the optimizer to the
# SUM of the workers' gradients. (--rescale global writes 1/{global_batch(a)}: the mean
# gradient over the global batch, as Module does, but not this baseline's update.)'''
    return f'''1/{global_batch(a)} = 1/(global batch = workers x batch_size): the mean gradient over the
# global batch if ward's servers apply the optimizer to the SUM of the workers' gradients.
# NOTE: this is NOT MXNet 1.9.1's Gluon update in this baseline: gluon.Trainer.step({a.batch})
# sets rescale_grad = 1/{a.batch} (per-worker batch) and the dist_sync server sums the workers'
# gradients, so MXNet steps {a.workers}x further (--rescale gluon writes 1/{a.batch}).'''


def grad_sum(a):
    if a.workers <= 3:
        return ' + '.join('g_%d' % r for r in range(a.workers))
    return 'g_0 + ... + g_%d' % (a.workers - 1)


def global_batch(a):
    return a.workers * a.batch


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('out')
    p.add_argument('--workers', type=int, default=2)
    p.add_argument('--batch', type=int, default=128)
    p.add_argument('--steps', type=int, default=200, help='timed steps (train.py --steps)')
    p.add_argument('--warmup', type=int, default=10, help='warm-up steps (train.py --warmup)')
    p.add_argument('--model', default='mlp', choices=sorted(HIDDEN))
    p.add_argument('--layout', default='shard', choices=['shard', 'interleave'],
                   help='how the workers\' rows are laid out in data.npy (ward cluster\'s '
                        'sharding decides which one it reads as MXNet\'s order)')
    p.add_argument('--rescale', default='gluon', choices=['gluon', 'global'],
                   help='gluon: rescale_grad = 1/batch, what MXNet 1.9.1 does here; '
                        'global: 1/(workers x batch)')
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)

    net = mlp(a.model)
    net.export(os.path.join(a.out, 'model'), epoch=0)

    per_worker = [worker_rows(r, a.batch, a.warmup, a.steps) for r in range(a.workers)]
    if a.layout == 'shard':
        data = np.concatenate([x for x, _ in per_worker])
        labels = np.concatenate([y for _, y in per_worker])
    else:
        steps = a.warmup + a.steps
        data = np.stack([x.reshape(steps, a.batch, WIDTH) for x, _ in per_worker], 1).reshape(-1, WIDTH)
        labels = np.stack([y.reshape(steps, a.batch) for _, y in per_worker], 1).reshape(-1)
    assert data.dtype == np.float32 and labels.dtype == np.float32
    assert data.shape == (a.workers * a.batch * (a.warmup + a.steps), WIDTH) and labels.shape == data.shape[:1]
    np.save(os.path.join(a.out, 'data.npy'), data)
    np.save(os.path.join(a.out, 'labels.npy'), labels)

    with open(os.path.join(a.out, 'train.toml'), 'w') as f:
        f.write(spec(a))
    nparams = sum(int(np.prod(v.shape)) for v in net.collect_params().values())
    with open(os.path.join(a.out, 'inputs.json'), 'w') as f:
        json.dump(dict(vars(a), rows=int(data.shape[0]), params=nparams,
                       rescale_grad=1.0 / a.batch if a.rescale == 'gluon' else 1.0 / global_batch(a)),
                  f, indent=1)
        f.write('\n')
    print('wrote %s: %d rows, %d parameters' % (a.out, data.shape[0], nparams))


if __name__ == '__main__':
    main()
