#!/usr/bin/env python3
"""Export one model per distinct network of MXNet's, GluonCV's and GluonNLP's zoos.

Run with the zoo virtual environment (tools/zoo/README.md says how to make it) from the
repository root:

    .venv-zoo/bin/python tools/zoo/export_zoo.py                    # every entry
    .venv-zoo/bin/python tools/zoo/export_zoo.py --only 'ssd_*'     # fnmatch on the name
    .venv-zoo/bin/python tools/zoo/export_zoo.py --list             # entries and duplicates
    .venv-zoo/bin/python tools/zoo/export_zoo.py --out /tmp/zoo     # default ~/.cache/ward-zoo

For every entry it writes `<out>/<zoo>/<name>/`:

* `model-symbol.json`, `model-0000.params`: `HybridBlock.export()` after `hybridize()` and
  one forward;
* `input-<name>.npy`: the inputs (float32; token ids are float32 integers, as Gluon feeds
  them);
* `output-<k>.npy`: MXNet's outputs, in the order of `sym.list_outputs()`, computed by the
  block re-imported from the exported files (`SymbolBlock.imports`), i.e. from exactly what
  ward imports;
* `meta.json`: zoo, family, inputs (name, dtype, shape), output names (`list_outputs()`),
  MXNet's load time (`SymbolBlock.imports` of the exported files) and first-forward time,
  the params file size; or `"status": "mxnet-failed"` with the stage and the exception when
  MXNet itself cannot build, forward or export the network (never dropped silently).

and `<out>/index.json`: every name of the three zoos, each with the entry that covers it.

Dedup rule (one entry per distinct network): names that differ only in the dataset they
were trained on (`_voc`, `_coco`, `_ade`, `_citys`, `_kinetics400`, `_custom`, ...), in the
pretrained weights (`_int8` calibrated copies aside, which are a different graph and are
kept once), in depth (resnet18/34/50/101/152 with the same block type) or in width
(mobilenet0.25..1.0, `_0.89` pruned widths) count once, at the smallest depth and width
that keeps the operators of the family: e.g. resnet18_v1 and resnet18_v2 (basic blocks;
the bottleneck block uses the same operators), vgg11 and vgg11_bn, densenet121,
mobilenet0.25. A different block type, stem, head or normalisation (v1b/v1c/v1d/v1e/v1s
stems, GroupNorm, SE, SyncBN, FPN, deformable convolution) is a different network.
`ENTRIES` below is the list; `DUPLICATE_OF` maps every other zoo name to its entry
(`index.json`); zoo names matched by neither are listed there as "not covered".

Determinism: every entry seeds `mx.random.seed`, `np.random.seed` and `random.seed` from
its name; parameters are initialised with Xavier, then every BatchNorm's gamma, beta,
running mean and running variance, and every bias, are redrawn from fixed-seed uniform
ranges so normalisation is not the identity. Nothing is downloaded: `pretrained=False`
and, for GluonCV's detection/segmentation/action nets, `pretrained_base=False`. MXNet runs
with `MXNET_ENGINE_TYPE=NaiveEngine`, `OMP_NUM_THREADS=1` and `MXNET_SUBGRAPH_BACKEND=NONE`:
the pip build's default oneDNN (MKLDNN) subgraph pass fuses convolution + BatchNorm and
computes wrong numbers when the convolution's output fans out to another consumer too, so
the references must come from MXNet's operators themselves, unfused. The variables are set
before mxnet is imported. Each entry runs in its own subprocess with a timeout
(`--timeout`, default 900 s), so a crash or a hang of one model does not stop the run.
"""

import argparse
import fnmatch
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import traceback

# Must be set before mxnet is imported (see the docstring for why the subgraph pass is off).
os.environ["MXNET_ENGINE_TYPE"] = "NaiveEngine"
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MXNET_SUBGRAPH_BACKEND"] = "NONE"
os.environ.setdefault("MXNET_STORAGE_FALLBACK_LOG_VERBOSE", "0")

DEFAULT_OUT = os.path.join(os.path.expanduser("~"), ".cache", "ward-zoo")

IMG = [(1, 3, 64, 64)]
IMG_FALLBACK = [(1, 3, 64, 64), (1, 3, 224, 224), (1, 3, 299, 299)]
CIFAR = [(1, 3, 32, 32)]


def E(zoo, name, family, shapes=None, kwargs=None, build=None, inputs=None, note=""):
    """An entry: `shapes` are alternative shapes of the single input `data`, tried in order
    until MXNet forwards; `inputs` (a function of the numpy RandomState) replaces them for
    multi-input or token-id nets; `build` (a function) replaces the zoo's get_model."""
    return {"zoo": zoo, "name": name, "family": family, "shapes": shapes or IMG_FALLBACK,
            "kwargs": kwargs or {}, "build": build, "inputs": inputs, "note": note}


NB = {"pretrained_base": False}


def _tsn_resnet18():
    from gluoncv.model_zoo.action_recognition.actionrec_resnetv1b import ActionRecResNetV1b
    return ActionRecResNetV1b(depth=18, nclass=400, pretrained_base=False, partial_bn=False, num_segments=1,
                              num_crop=1, dropout_ratio=0.5, init_std=0.01)


ENTRIES = [
    # --- MXNet 1.9.1 gluon.model_zoo.vision ------------------------------------------
    E("mxnet", "alexnet", "classification"),
    E("mxnet", "densenet121", "classification"),
    E("mxnet", "inceptionv3", "classification", shapes=[(1, 3, 299, 299)]),
    E("mxnet", "mobilenet0.25", "classification"),
    E("mxnet", "mobilenetv2_0.25", "classification"),
    E("mxnet", "resnet18_v1", "classification"),
    E("mxnet", "resnet18_v2", "classification"),
    E("mxnet", "squeezenet1.0", "classification"),
    E("mxnet", "squeezenet1.1", "classification"),
    E("mxnet", "vgg11", "classification"),
    E("mxnet", "vgg11_bn", "classification"),
    # --- GluonCV 0.10.5.post0: classification -----------------------------------------
    E("gluoncv", "resnet18_v1b", "classification"),
    E("gluoncv", "resnet50_v1c", "classification"),
    E("gluoncv", "resnet50_v1d", "classification"),
    E("gluoncv", "resnet50_v1e", "classification"),
    E("gluoncv", "resnet50_v1s", "classification"),
    E("gluoncv", "resnet50_v1b_gn", "classification"),
    E("gluoncv", "resnest14", "classification"),
    E("gluoncv", "se_resnet18_v1", "classification"),
    E("gluoncv", "se_resnet18_v2", "classification"),
    E("gluoncv", "resnext50_32x4d", "classification"),
    E("gluoncv", "se_resnext50_32x4d", "classification"),
    E("gluoncv", "senet_154", "classification"),
    E("gluoncv", "darknet53", "classification"),
    E("gluoncv", "googlenet", "classification"),
    E("gluoncv", "inceptionv3", "classification", shapes=[(1, 3, 299, 299)]),
    E("gluoncv", "xception", "classification"),
    E("gluoncv", "mobilenetv3_small", "classification"),
    E("gluoncv", "shufflenet_v1", "classification"),
    E("gluoncv", "shufflenet_v2", "classification"),
    E("gluoncv", "nasnet_4_1056", "classification", shapes=[(1, 3, 224, 224)]),
    E("gluoncv", "residualattentionnet56", "classification", shapes=[(1, 3, 224, 224)]),
    E("gluoncv", "cifar_residualattentionnet56", "classification", shapes=CIFAR),
    E("gluoncv", "cifar_resnet20_v1", "classification", shapes=CIFAR),
    E("gluoncv", "cifar_resnet20_v2", "classification", shapes=CIFAR),
    E("gluoncv", "cifar_wideresnet16_10", "classification", shapes=CIFAR),
    E("gluoncv", "cifar_resnext29_32x4d", "classification", shapes=CIFAR),
    E("gluoncv", "hrnet_w18_small_v1_c", "classification"),
    E("gluoncv", "hrnet_w18_small_v1_s", "segmentation"),
    E("gluoncv", "dla34", "classification"),
    E("gluoncv", "mobilenet1.0_int8", "classification (int8)"),
    # --- GluonCV: pose --------------------------------------------------------------------
    E("gluoncv", "simple_pose_resnet18_v1b", "pose", shapes=[(1, 3, 64, 64)], kwargs=NB),
    E("gluoncv", "mobile_pose_mobilenetv3_small", "pose", shapes=[(1, 3, 64, 64)], kwargs=NB),
    E("gluoncv", "alpha_pose_resnet101_v1b_coco", "pose", shapes=[(1, 3, 64, 64)], kwargs=NB),
    # --- GluonCV: detection ---------------------------------------------------------------
    E("gluoncv", "ssd_300_mobilenet0.25_voc", "detection", shapes=[(1, 3, 128, 128), (1, 3, 300, 300)], kwargs=NB),
    E("gluoncv", "ssd_300_vgg16_atrous_voc", "detection", shapes=[(1, 3, 128, 128), (1, 3, 300, 300)], kwargs=NB),
    E("gluoncv", "ssd_512_resnet18_v1_voc", "detection", shapes=[(1, 3, 128, 128), (1, 3, 512, 512)], kwargs=NB),
    E("gluoncv", "ssd_300_mobilenet1.0_lite_coco", "detection", shapes=[(1, 3, 128, 128), (1, 3, 300, 300)], kwargs=NB),
    E("gluoncv", "yolo3_mobilenet0.25_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "yolo3_darknet53_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "faster_rcnn_resnet50_v1b_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "faster_rcnn_fpn_resnet50_v1b_coco", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "faster_rcnn_fpn_syncbn_resnet50_v1b_coco", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "doublehead_rcnn_resnet50_v1b_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "mask_rcnn_resnet18_v1b_coco", "instance segmentation", shapes=[(1, 3, 128, 128), (1, 3, 256, 256)], kwargs=NB),
    E("gluoncv", "mask_rcnn_fpn_resnet18_v1b_coco", "instance segmentation", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "center_net_resnet18_v1b_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "center_net_resnet18_v1b_dcnv2_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "center_net_mobilenetv3_small_duc_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    E("gluoncv", "center_net_dla34_voc", "detection", shapes=[(1, 3, 128, 128)], kwargs=NB),
    # --- GluonCV: semantic segmentation (crop_size fixes the upsampling targets) -----------
    E("gluoncv", "fcn_resnet50_voc", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "psp_resnet50_ade", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "deeplab_resnet50_ade", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "deeplab_resnest50_ade", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "deeplab_v3b_plus_wideresnet_citys", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "icnet_resnet50_citys", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "fastscnn_citys", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "danet_resnet50_citys", "segmentation", shapes=[(1, 3, 128, 128)], kwargs=dict(NB, crop_size=128, base_size=128)),
    E("gluoncv", "monodepth2_resnet18_kitti_stereo_640x192", "depth", shapes=[(1, 3, 64, 64)], kwargs=NB),
    E("gluoncv", "monodepth2_resnet18_posenet_kitti_mono_640x192", "depth", shapes=[(1, 6, 64, 64)], kwargs=NB),
    # --- GluonCV: action recognition --------------------------------------------------------
    E("gluoncv", "resnet18_v1b_kinetics400", "action", shapes=[(1, 3, 64, 64)], build=_tsn_resnet18,
      note="built as the preset does, with pretrained_base=False (the preset always downloads)"),
    E("gluoncv", "inceptionv1_kinetics400", "action", shapes=[(1, 3, 64, 64), (1, 3, 224, 224)], kwargs=NB),
    E("gluoncv", "inceptionv3_kinetics400", "action", shapes=[(1, 3, 299, 299)], kwargs=NB),
    E("gluoncv", "vgg16_kinetics400", "action", shapes=[(1, 3, 64, 64), (1, 3, 224, 224)], kwargs=NB),
    E("gluoncv", "c3d_kinetics400", "action", shapes=[(1, 3, 16, 112, 112)], kwargs=NB),
    E("gluoncv", "p3d_resnet50_kinetics400", "action", shapes=[(1, 3, 8, 64, 64), (1, 3, 16, 112, 112)], kwargs=NB),
    E("gluoncv", "r2plus1d_resnet18_kinetics400", "action", shapes=[(1, 3, 8, 64, 64), (1, 3, 16, 112, 112)], kwargs=NB),
    E("gluoncv", "i3d_resnet50_v1_kinetics400", "action", shapes=[(1, 3, 8, 64, 64), (1, 3, 32, 224, 224)], kwargs=NB),
    E("gluoncv", "i3d_inceptionv1_kinetics400", "action", shapes=[(1, 3, 8, 64, 64), (1, 3, 32, 224, 224)], kwargs=NB),
    E("gluoncv", "i3d_inceptionv3_kinetics400", "action", shapes=[(1, 3, 8, 96, 96), (1, 3, 32, 299, 299)], kwargs=NB),
    E("gluoncv", "i3d_nl5_resnet50_v1_kinetics400", "action", shapes=[(1, 3, 8, 64, 64), (1, 3, 32, 224, 224)], kwargs=NB),
    E("gluoncv", "slowfast_4x16_resnet50_kinetics400", "action", shapes=[(1, 3, 36, 64, 64), (1, 3, 36, 224, 224)], kwargs=NB),
    # --- GluonCV: tracking (two inputs: template and search region) -------------------------
    E("gluoncv", "siamrpn_alexnet_v2_otb15", "tracking", kwargs=NB,
      inputs=lambda rs: [("template", rs.uniform(-1, 1, (1, 3, 127, 127))),
                         ("detection", rs.uniform(-1, 1, (1, 3, 287, 287)))]),
]


# --- GluonNLP 0.10.0: narrow widths through the constructors' hyper-parameters -------------

def _vocab(n=64):
    import gluonnlp as nlp
    import collections
    words = ["w%d" % i for i in range(n - 8)]
    return nlp.Vocab(collections.Counter(words))


def _bert_vocab(n=64):
    import gluonnlp as nlp
    import collections
    return nlp.vocab.BERTVocab(collections.Counter(["w%d" % i for i in range(n - 8)]))


def _bert(name, small):
    def build():
        import gluonnlp as nlp
        net, _ = nlp.model.get_model(name, dataset_name=None, vocab=_bert_vocab(), pretrained=False,
                                     use_pooler=True, use_decoder=False, use_classifier=False,
                                     hparam_allow_override=True, **small)
        return net
    return build


def _bert_inputs(seq=8, token_types=True, vocab=64):
    def inputs(rs):
        ins = [("data0", rs.randint(0, vocab, (1, seq)).astype("float32"))]
        if token_types:
            ins.append(("data1", rs.randint(0, 2, (1, seq)).astype("float32")))
        ins.append(("data%d" % len(ins), np.array([seq - 2], dtype="float32")))
        return ins
    return inputs


def _with_states(net):
    """The recurrent nets need their begin states as inputs (with None they call NDArray-only
    code that cannot be traced): wrap net(x, states) as a HybridBlock over x and the flattened
    states, and remember their shapes for the inputs."""
    import mxnet as mx

    if not isinstance(net, mx.gluon.HybridBlock):
        raise TypeError("%s is a gluon.Block, not a HybridBlock: MXNet cannot hybridize or export it"
                        % type(net).__name__)
    states = net.begin_state(batch_size=1, func=mx.nd.zeros)

    def flat(s):
        return [a for x in s for a in flat(x)] if isinstance(s, (list, tuple)) else [s]

    def rebuild(s, it):
        return [rebuild(x, it) for x in s] if isinstance(s, (list, tuple)) else next(it)

    shapes = [a.shape for a in flat(states)]

    class WithStates(mx.gluon.HybridBlock):
        def __init__(self, inner):
            super().__init__(prefix="")
            with self.name_scope():
                self.inner = inner

        def hybrid_forward(self, F, x, *flat_states):  # noqa: N803
            return self.inner(x, rebuild(states, iter(flat_states)))

    wrapper = WithStates(net)
    wrapper.state_shapes = shapes
    return wrapper


_STATE_SHAPES = {}


def _lm(name, small):
    def build():
        import gluonnlp as nlp
        net, _ = nlp.model.get_model(name, dataset_name=None, vocab=_vocab(), pretrained=False,
                                     hparam_allow_override=True, **small)
        net.initialize(mx_init())
        w = _with_states(net)
        _STATE_SHAPES[name] = w.state_shapes
        return w
    return build


_INIT = []


def mx_init():
    """Xavier for weights of 2 or more dimensions; vectors (a SymbolBlock's parameters, such
    as GluonCV's SSD feature expanders, carry no initializer of their own, and Xavier refuses
    vectors) from the usual per-suffix defaults, else uniform in [-0.1, 0.1]."""
    import mxnet as mx
    if not _INIT:
        @mx.init.register
        class ZooInit(mx.init.Initializer):
            def __init__(self):
                super().__init__()
                self._xavier = mx.init.Xavier(magnitude=2)

            def _init_weight(self, name, arr):
                if len(arr.shape) >= 2:
                    self._xavier._init_weight(name, arr)
                else:
                    arr[:] = mx.nd.random.uniform(-0.1, 0.1, arr.shape)

            def _init_default(self, name, arr):
                self._init_weight(name, arr)

        _INIT.append(ZooInit)
    return _INIT[0]()


def _states_inputs(name, first):
    def inputs(rs):
        ins = [("data0", first(rs))]
        for k, shp in enumerate(_STATE_SHAPES.get(name, [])):
            ins.append(("data%d" % (k + 1), rs.uniform(-0.5, 0.5, shp).astype("float32")))
        return ins
    return inputs


def _lm_inputs(name):
    return _states_inputs(name, lambda rs: rs.randint(0, 64, (5, 1)).astype("float32"))


def _transformer():
    import mxnet as mx
    import gluonnlp as nlp
    v = _vocab()
    # get_model("transformer_en_de_512") always loads the WMT vocabularies (a download, even
    # with vocab= given: gluonnlp appends "_src" to dataset_name), so build it from the same
    # constructors transformer_en_de_512 uses, with its hyper-parameters narrowed.
    from gluonnlp.model.transformer import get_transformer_encoder_decoder
    from gluonnlp.model.translation import NMTModel
    enc, dec, one_step = get_transformer_encoder_decoder(
        units=32, hidden_size=64, dropout=0.1, num_layers=2, num_heads=2, max_src_length=530,
        max_tgt_length=549, scaled=True)
    model = NMTModel(src_vocab=v, tgt_vocab=v, encoder=enc, decoder=dec, one_step_ahead_decoder=one_step,
                     share_embed=True, embed_size=32, tie_weights=True, embed_initializer=None,
                     prefix="transformer_")

    class Seq2Seq(mx.gluon.HybridBlock):
        """NMTModel.forward (teacher-forced decoding of the whole target) as one HybridBlock."""

        def __init__(self, m):
            super().__init__(prefix="")
            with self.name_scope():
                self.src_embed, self.encoder, self.tgt_embed = m.src_embed, m.encoder, m.tgt_embed
                self.decoder, self.tgt_proj = m.decoder, m.tgt_proj

        def hybrid_forward(self, F, src, tgt, src_len, tgt_len):  # noqa: N803
            m = self
            enc, _ = m.encoder(m.src_embed(src), None, src_len)
            masks = F.broadcast_lesser(F.contrib.arange_like(enc, axis=1).reshape((1, -1)),
                                       src_len.reshape((-1, 1)))
            out, _, _ = m.decoder(m.tgt_embed(tgt), [enc, masks], tgt_len)
            return m.tgt_proj(out)

    return Seq2Seq(model)


def _transformer_inputs(rs):
    return [("data0", rs.randint(0, 64, (1, 6)).astype("float32")),
            ("data1", rs.randint(0, 64, (1, 5)).astype("float32")),
            ("data2", np.array([5], dtype="float32")), ("data3", np.array([4], dtype="float32"))]


def _elmo():
    import gluonnlp as nlp
    net = _elmo_net(nlp)
    net.initialize(mx_init())
    w = _with_states(net)
    _STATE_SHAPES["elmo"] = w.state_shapes
    return w


def _elmo_net(nlp):
    # get_model refuses any hyper-parameter override for ELMo: build the same class with the
    # predefined arguments of elmo_2x1024_128_2048cnn_1xhighway, narrowed.
    return nlp.model.ELMoBiLM(rnn_type="lstmpc", output_size=8, filters=[[1, 4], [2, 8]], char_embed_size=4,
                              char_vocab_size=len(nlp.vocab.ELMoCharVocab()), num_highway=1,
                              conv_layer_activation="relu", max_chars_per_token=50, input_size=8,
                              hidden_size=16, proj_size=8, num_layers=2, cell_clip=3, proj_clip=3,
                              skip_connection=True)


_elmo_inputs = _states_inputs("elmo", lambda rs: rs.randint(0, 262, (1, 4, 50)).astype("float32"))


SMALL_BERT = dict(num_layers=2, units=32, hidden_size=64, num_heads=2, max_length=64, embed_size=32)

ENTRIES += [
    E("gluonnlp", "bert_12_768_12", "BERT", build=_bert("bert_12_768_12", SMALL_BERT),
      inputs=_bert_inputs(), note="2 layers, 32 units, 2 heads, vocab 64"),
    E("gluonnlp", "roberta_12_768_12", "RoBERTa", build=_bert("roberta_12_768_12", SMALL_BERT),
      inputs=_bert_inputs(token_types=False), note="2 layers, 32 units, 2 heads, vocab 64"),
    E("gluonnlp", "distilbert_6_768_12", "DistilBERT", build=_bert("distilbert_6_768_12", SMALL_BERT),
      inputs=_bert_inputs(token_types=False), note="2 layers, 32 units, 2 heads, vocab 64"),
    E("gluonnlp", "standard_lstm_lm_200", "language model (LSTM)",
      build=_lm("standard_lstm_lm_200", dict(embed_size=16, hidden_size=16, dropout=0.0)),
      inputs=_lm_inputs("standard_lstm_lm_200"),
      note="embed 16, hidden 16, vocab 64, dropout 0 (gluonnlp calls nd.Dropout inside hybrid_forward otherwise, which cannot be traced)"),
    E("gluonnlp", "awd_lstm_lm_600", "language model (AWD-LSTM)",
      build=_lm("awd_lstm_lm_600", dict(embed_size=16, hidden_size=16)),
      inputs=_lm_inputs("awd_lstm_lm_600"),
      note="embed 16, hidden 16, vocab 64"),
    E("gluonnlp", "big_rnn_lm_2048_512", "language model (LSTMP)",
      build=_lm("big_rnn_lm_2048_512", dict(embed_size=16, hidden_size=32, projection_size=16)),
      inputs=_lm_inputs("big_rnn_lm_2048_512"), note="embed 16, hidden 32, projection 16, vocab 64"),
    E("gluonnlp", "transformer_en_de_512", "Transformer (encoder-decoder)", build=_transformer,
      inputs=_transformer_inputs,
      note="2 layers, 32 units, 2 heads, vocab 64; NMTModel is a plain Block, so its "
           "embeddings, encoder, decoder and projection are wrapped in one HybridBlock"),
    E("gluonnlp", "elmo_2x1024_128_2048cnn_1xhighway", "ELMo", build=_elmo, inputs=_elmo_inputs,
      note="filters [[1,4],[2,8]], 1 highway, projection 8, hidden 16"),
]

# Other zoo names and the entry that covers them (the dedup rule in the docstring).
DEDUP_PATTERNS = [
    # (regex on the zoo name, entry name)
    (r"^resnet\d+_v1$", "resnet18_v1"), (r"^resnet\d+_v2$", "resnet18_v2"),
    (r"^vgg\d+$", "vgg11"), (r"^vgg\d+_bn$", "vgg11_bn"), (r"^densenet\d+$", "densenet121"),
    (r"^mobilenet\d\.\d+$", "mobilenet0.25"), (r"^mobilenetv2_\d\.\d+$", "mobilenetv2_0.25"),
    (r"^mobilenetv3_large$", "mobilenetv3_small"),
    (r"^resnet\d+_v1b(_0\.\d+)?$", "resnet18_v1b"), (r"^resnet\d+_v1c$", "resnet50_v1c"),
    (r"^resnet\d+_v1d(_0\.\d+)?$", "resnet50_v1d"), (r"^resnet\d+_v1e$", "resnet50_v1e"),
    (r"^resnet\d+_v1s$", "resnet50_v1s"), (r"^resnet\d+_v1b_gn$", "resnet50_v1b_gn"),
    (r"^resnest\d+$", "resnest14"), (r"^se_resnet\d+_v1$", "se_resnet18_v1"),
    (r"^se_resnet\d+_v2$", "se_resnet18_v2"), (r"^resnext\d+e?_\d+x\d+d$", "resnext50_32x4d"),
    (r"^se_resnext\d+e?_\d+x\d+d$", "se_resnext50_32x4d"), (r"^senet_154e?$", "senet_154"),
    (r"^xception\d*$", "xception"), (r"^nasnet_", "nasnet_4_1056"),
    (r"^residualattentionnet\d+$", "residualattentionnet56"),
    (r"^cifar_residualattentionnet\d+$", "cifar_residualattentionnet56"),
    (r"^cifar_resnet\d+_v1$", "cifar_resnet20_v1"), (r"^cifar_resnet\d+_v2$", "cifar_resnet20_v2"),
    (r"^cifar_wideresnet", "cifar_wideresnet16_10"), (r"^cifar_resnext", "cifar_resnext29_32x4d"),
    (r"^hrnet_.*_c$", "hrnet_w18_small_v1_c"), (r"^hrnet_.*_s$", "hrnet_w18_small_v1_s"),
    (r"^.*_int8$", "mobilenet1.0_int8"),
    (r"^simple_pose_", "simple_pose_resnet18_v1b"), (r"^mobile_pose_", "mobile_pose_mobilenetv3_small"),
    (r"^ssd_\d+_mobilenet0\.25_", "ssd_300_mobilenet0.25_voc"),
    (r"^ssd_\d+_mobilenet1\.0_lite", "ssd_300_mobilenet1.0_lite_coco"),
    (r"^ssd_\d+_mobilenet1\.0_", "ssd_300_mobilenet0.25_voc"),
    (r"^ssd_\d+_vgg16_atrous_", "ssd_300_vgg16_atrous_voc"),
    (r"^ssd_\d+_resnet", "ssd_512_resnet18_v1_voc"),
    (r"^yolo3_mobilenet", "yolo3_mobilenet0.25_voc"), (r"^yolo3_darknet", "yolo3_darknet53_voc"),
    (r"^faster_rcnn_resnet", "faster_rcnn_resnet50_v1b_voc"),
    (r"^faster_rcnn_fpn_resnet", "faster_rcnn_fpn_resnet50_v1b_coco"),
    (r"^(custom_)?faster_rcnn_fpn(_syncbn)?", "faster_rcnn_fpn_syncbn_resnet50_v1b_coco"),
    (r"^mask_rcnn_resnet", "mask_rcnn_resnet18_v1b_coco"),
    (r"^(custom_)?mask_rcnn_fpn", "mask_rcnn_fpn_resnet18_v1b_coco"),
    (r"^center_net_resnet\d+_v1b_dcnv2", "center_net_resnet18_v1b_dcnv2_voc"),
    (r"^center_net_resnet", "center_net_resnet18_v1b_voc"),
    (r"^center_net_mobilenetv3", "center_net_mobilenetv3_small_duc_voc"),
    (r"^center_net_dla34", "center_net_dla34_voc"),
    (r"^fcn_", "fcn_resnet50_voc"), (r"^psp_", "psp_resnet50_ade"),
    (r"^deeplab_resnest", "deeplab_resnest50_ade"), (r"^deeplab_resnet", "deeplab_resnet50_ade"),
    (r"^icnet_", "icnet_resnet50_citys"), (r"^danet_", "danet_resnet50_citys"),
    (r"^monodepth2_resnet18_posenet", "monodepth2_resnet18_posenet_kitti_mono_640x192"),
    (r"^monodepth2_", "monodepth2_resnet18_kitti_stereo_640x192"),
    (r"^resnet\d+_v1b_(kinetics400|sthsthv2|ucf101|hmdb51|custom)$", "resnet18_v1b_kinetics400"),
    (r"^inceptionv1_", "inceptionv1_kinetics400"), (r"^inceptionv3_(ucf|hmdb|kin|sth)", "inceptionv3_kinetics400"),
    (r"^vgg16_(ucf|hmdb|kin|sth)", "vgg16_kinetics400"), (r"^p3d_", "p3d_resnet50_kinetics400"),
    (r"^r2plus1d_", "r2plus1d_resnet18_kinetics400"), (r"^i3d_resnet", "i3d_resnet50_v1_kinetics400"),
    (r"^i3d_slow_resnet", "i3d_resnet50_v1_kinetics400"), (r"^i3d_nl", "i3d_nl5_resnet50_v1_kinetics400"),
    (r"^slowfast_", "slowfast_4x16_resnet50_kinetics400"),
    (r"^(alexnet|densenet\d+|squeezenet1\.[01]|inceptionv3|mobilenet.*|resnet\d+_v[12]|vgg.*)$", "(same code as MXNet's vision zoo entry)"),
    (r"^bert_24_1024_16$", "bert_12_768_12"), (r"^roberta_24_1024_16$", "roberta_12_768_12"),
    (r"^ernie_12_768_12$", "bert_12_768_12"),
    (r"^standard_lstm_lm_", "standard_lstm_lm_200"), (r"^awd_lstm_lm_", "awd_lstm_lm_600"),
    (r"^elmo_", "elmo_2x1024_128_2048cnn_1xhighway"),
]


def seed_for(name):
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % (2 ** 31)


def zoo_names():
    """Every model name of the three zoos."""
    import mxnet as mx
    names = {}
    from mxnet.gluon.model_zoo import vision
    import inspect
    src = inspect.getsource(vision.get_model)
    names["mxnet"] = sorted(set(re.findall(r"'([a-z0-9_.]+)'\s*:", src)))
    try:
        import gluoncv
        names["gluoncv"] = sorted(gluoncv.model_zoo.get_model_list())
    except Exception as exc:  # noqa: BLE001
        names["gluoncv"] = ["(gluoncv not importable: %s)" % exc]
    try:
        import gluonnlp
        src = inspect.getsource(gluonnlp.model.get_model)
        names["gluonnlp"] = sorted(set(re.findall(r"'([a-z0-9_]+)'\s*:", src)))
    except Exception as exc:  # noqa: BLE001
        names["gluonnlp"] = ["(gluonnlp not importable: %s)" % exc]
    del mx
    return names


def covered_by(zoo, name):
    for e in ENTRIES:
        if e["name"] == name and (e["zoo"] == zoo or zoo == "gluoncv"):
            return e["zoo"] + "/" + e["name"]
    for pat, target in DEDUP_PATTERNS:
        if re.search(pat, name):
            if target.startswith("("):
                return "mxnet/" + (name if zoo == "mxnet" else re.sub(r"^", "", name)) + " " + target
            return target
    return None


# ----------------------------------------------------------------------------
# one entry, in a child process
# ----------------------------------------------------------------------------

import numpy as np  # noqa: E402


def randomise(net, rs):
    """Redraw normalisation statistics and biases so BatchNorm is not the identity."""
    for pname, p in sorted(net.collect_params().items()):
        try:
            shape = p.shape
            arr = p.data()
        except Exception:  # noqa: BLE001  (deferred / unused parameters)
            continue
        if arr.dtype != np.float32:
            continue
        if pname.endswith(("running_var", "gamma", "moving_var")):
            p.set_data(rs.uniform(0.5, 1.5, shape).astype(arr.dtype))
        elif pname.endswith(("running_mean", "beta", "moving_mean", "bias")):
            p.set_data(rs.uniform(-0.2, 0.2, shape).astype(arr.dtype))


def flatten(out):
    if isinstance(out, (list, tuple)):
        res = []
        for o in out:
            res.extend(flatten(o))
        return res
    return [out]


def build_net(entry):
    import mxnet as mx
    if entry["build"] is not None:
        return entry["build"]()
    if entry["zoo"] == "mxnet":
        from mxnet.gluon.model_zoo import vision
        return vision.get_model(entry["name"], pretrained=False, **entry["kwargs"])
    if entry["zoo"] == "gluoncv":
        import gluoncv
        # GluonCV's action-recognition presets call collect_params().reset_ctx(ctx) on
        # parameters they never initialised when pretrained=False, which raises: moving an
        # uninitialised parameter is a no-op here instead.
        param_cls = mx.gluon.parameter.Parameter
        if not getattr(param_cls, "_zoo_patched", False):
            orig = param_cls.reset_ctx

            def reset_ctx(self, ctx):
                if self._data is None and not self._deferred_init:
                    return None
                return orig(self, ctx)
            param_cls.reset_ctx = reset_ctx
            param_cls._zoo_patched = True
        return gluoncv.model_zoo.get_model(entry["name"], pretrained=False, **entry["kwargs"])
    if entry["zoo"] == "gluonnlp":
        import gluonnlp
        if entry["name"].startswith("transformer"):
            raise NotImplementedError("transformer: see build_transformer")
        return gluonnlp.model.get_model(entry["name"], pretrained=False, **entry["kwargs"])
    del mx
    raise ValueError(entry["zoo"])


def export_one(entry, out_dir):
    import mxnet as mx
    name = entry["name"]
    seed = seed_for(entry["zoo"] + "/" + name)
    mx.random.seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    rs = np.random.RandomState(seed)
    meta = {"zoo": entry["zoo"], "name": name, "family": entry["family"], "note": entry["note"],
            "mxnet": mx.__version__}
    stage = "build"
    try:
        net = build_net(entry)
        stage = "initialize"
        net.initialize(mx_init(), force_reinit=False)
        stage = "forward"
        if entry["inputs"] is not None:
            candidates = [entry["inputs"](rs)]
        else:
            candidates = [[("data", rs.uniform(-1, 1, s))] for s in entry["shapes"]]
        err = None
        for ins in candidates:
            ins = [(n, a.astype("float32")) for n, a in ins]
            try:
                net(*[mx.nd.array(a) for _, a in ins])
                mx.nd.waitall()
                err = None
                break
            except Exception as exc:  # noqa: BLE001
                err = exc
        if err is not None:
            raise err
        randomise(net, rs)
        stage = "hybridize"
        net.hybridize()
        net(*[mx.nd.array(a) for _, a in ins])
        mx.nd.waitall()
        stage = "export"
        prefix = os.path.join(out_dir, "model")
        net.export(prefix, epoch=0)
        stage = "reload"
        sym_file, params_file = prefix + "-symbol.json", prefix + "-0000.params"
        sym = mx.sym.load(sym_file)
        input_names = [n for n, _ in ins]
        t0 = time.perf_counter()
        block = mx.gluon.SymbolBlock.imports(sym_file, input_names, params_file)
        t1 = time.perf_counter()
        outs = flatten(block(*[mx.nd.array(a) for _, a in ins]))
        mx.nd.waitall()
        t2 = time.perf_counter()
        outs = [o.asnumpy() for o in outs]
        for n, a in ins:
            np.save(os.path.join(out_dir, "input-%s.npy" % n), a)
        for k, o in enumerate(outs):
            np.save(os.path.join(out_dir, "output-%d.npy" % k), o)
        meta.update({
            "status": "exported",
            "inputs": [{"name": n, "dtype": str(a.dtype), "shape": list(a.shape)} for n, a in ins],
            "outputs": sym.list_outputs(),
            "output_dtypes": [str(o.dtype) for o in outs],
            "output_shapes": [list(o.shape) for o in outs],
            "mxnet_load_s": t1 - t0,
            "mxnet_first_forward_s": t2 - t1,
            "params_bytes": os.path.getsize(params_file),
            "symbol_bytes": os.path.getsize(sym_file),
            "seed": seed,
        })
    except Exception as exc:  # noqa: BLE001
        lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
        # MXNetError's first line is "Traceback ..."; its message is the last line.
        msg = (lines[-1] if type(exc).__name__ == "MXNetError" else lines[0]) if lines else ""
        meta.update({"status": "mxnet-failed", "stage": stage,
                     "error": "%s: %s" % (type(exc).__name__, msg[:300]),
                     "traceback": traceback.format_exc()[-3000:]})
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    return meta


def entry_dir(out, entry):
    return os.path.join(out, entry["zoo"], entry["name"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--only", action="append", help="fnmatch pattern on the entry name (repeatable)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--skip-existing", action="store_true", help="keep entries already exported")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        zoo, name = args.one.split("/", 1)
        entry = next(e for e in ENTRIES if e["zoo"] == zoo and e["name"] == name)
        d = entry_dir(args.out, entry)
        meta = export_one(entry, d)
        print("%s/%s: %s %s" % (zoo, name, meta["status"], meta.get("error", "")), flush=True)
        return 0

    selected = [e for e in ENTRIES
                if not args.only or any(fnmatch.fnmatch(e["name"], p) for p in args.only)]
    if args.list:
        for e in selected:
            print("%-9s %-45s %s" % (e["zoo"], e["name"], e["family"]))
        index = []
        for zoo, names in zoo_names().items():
            for n in names:
                print("  %-9s %-48s -> %s" % (zoo, n, covered_by(zoo, n) or "NOT COVERED"))
        del index
        return 0

    os.makedirs(args.out, exist_ok=True)
    index = {zoo: {n: covered_by(zoo, n) for n in names} for zoo, names in zoo_names().items()}
    with open(os.path.join(args.out, "index.json"), "w") as f:
        json.dump({"entries": [{"zoo": e["zoo"], "name": e["name"], "family": e["family"]} for e in ENTRIES],
                   "zoo_names": index}, f, indent=1, sort_keys=True)
    for e in selected:
        d = entry_dir(args.out, e)
        if args.skip_existing and os.path.exists(os.path.join(d, "meta.json")):
            continue
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
        t0 = time.time()
        try:
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", e["zoo"] + "/" + e["name"],
                                "--out", args.out], timeout=args.timeout, capture_output=True, text=True)
            line = (p.stdout.strip().splitlines() or [""])[-1]
            if p.returncode != 0 or not os.path.exists(os.path.join(d, "meta.json")):
                err = "exporter exited %d: %s" % (p.returncode, (p.stderr.strip().splitlines() or [""])[-1][:300])
                meta = {"zoo": e["zoo"], "name": e["name"], "family": e["family"], "status": "mxnet-failed",
                        "stage": "process", "error": err}
                with open(os.path.join(d, "meta.json"), "w") as f:
                    json.dump(meta, f, indent=1, sort_keys=True)
                line = "%s/%s: mxnet-failed %s" % (e["zoo"], e["name"], err)
        except subprocess.TimeoutExpired:
            meta = {"zoo": e["zoo"], "name": e["name"], "family": e["family"], "status": "mxnet-failed",
                    "stage": "process", "error": "timed out after %d s" % args.timeout}
            with open(os.path.join(d, "meta.json"), "w") as f:
                json.dump(meta, f, indent=1, sort_keys=True)
            line = "%s/%s: mxnet-failed timeout" % (e["zoo"], e["name"])
        print("%s  (%.1f s)" % (line, time.time() - t0), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
