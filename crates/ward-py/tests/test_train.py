"""ward.train and ward.checkpoint: the run of `ward train`, the same numbers as the
command, callbacks that watch, end or abandon a run, a resumed run that ends where an
uninterrupted one does, and checkpoints verified before they are decrypted."""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest

import ward

from conftest import MODELS, REPO, run_ward


def write_spec(folder, epochs=1, momentum=0.9):
    """The Module LeNet fixture trained on the bundled MNIST digits, 64 a batch."""
    model = MODELS / "lenet_module"
    mnist = REPO / "tests" / "fixtures" / "mnist"
    spec = folder / "train.toml"
    spec.write_text(
        f"""
[model]
symbol = "{model / 'model-symbol.json'}"
params = "{model / 'model-0000.params'}"
name = "lenet"

[data]
batch_size = 64

[data.train]
format = "mnist"
images = "{mnist / 'train-images-idx3-ubyte.gz'}"
labels = "{mnist / 'train-labels-idx1-ubyte.gz'}"

[optimizer]
name = "sgd"
learning_rate = 0.1
momentum = {momentum}
rescale_grad = 0.015625

[run]
epochs = {epochs}
log_every = 10
seed = "7"
threads = 1
"""
    )
    return spec


def passphrase(folder):
    path = folder / "passphrase.txt"
    path.write_text("correct horse battery staple\n")
    os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    return path


def weights(run_dir):
    return (run_dir / "package" / "weights.safetensors").read_bytes()


def test_train_gives_the_cli_s_package_bit_for_bit_and_reports_every_step(tmp_path, keys):
    spec = write_spec(tmp_path)
    steps, epochs = [], []
    result = ward.train(
        spec,
        out=tmp_path / "py",
        sign_key=keys["release"]["private_key"],
        on_step=steps.append,
        on_epoch=epochs.append,
    )
    assert isinstance(result, ward.TrainResult)
    assert result.signed and not result.stopped_early
    assert result.model == "lenet" and result.epochs == 1
    assert result.steps == len(steps) > 10
    assert [e["step"] for e in steps] == list(range(1, result.steps + 1))
    assert all(np.isfinite(e["loss"]) and 0 <= e["accuracy"] <= 1 for e in steps)
    assert [e["step"] for e in steps if "window_loss" in e] == list(range(10, result.steps + 1, 10))
    assert [e["epoch"] for e in epochs] == [0]
    assert epochs[0]["summary"].startswith("epoch 0: loss ")

    run_ward("train", "--config", spec, "--out", tmp_path / "cli")
    assert weights(tmp_path / "py") == weights(tmp_path / "cli")
    # The trained package opens under the signing key and predicts.
    model = ward.Package.open(result.package, trust=keys["release"]["public_key"])
    out = model.predict(data=np.zeros((1, 1, 28, 28), np.float32))
    assert list(out.values())[0].shape == (1, 10)


def test_a_callback_returning_false_ends_the_run_early_with_a_package(tmp_path):
    spec = write_spec(tmp_path, epochs=2)
    result = ward.train(spec, out=tmp_path / "run", on_step=lambda e: e["step"] < 5)
    assert result.stopped_early and result.steps == 5 and result.epochs == 0
    assert (tmp_path / "run" / "package" / "weights.safetensors").is_file()


class Interrupted(Exception):
    pass


def test_an_abandoned_run_resumes_to_the_uninterrupted_run_s_weights(tmp_path, keys):
    spec = write_spec(tmp_path, epochs=2)
    secret = passphrase(tmp_path)
    common = dict(sign_key=keys["release"]["private_key"], passphrase_file=secret)
    whole = ward.train(spec, out=tmp_path / "whole", **common)
    per_epoch = whole.steps // 2

    def interrupt(event):
        if event["step"] == per_epoch + 3:
            raise Interrupted("stop here")

    with pytest.raises(Interrupted):
        ward.train(spec, out=tmp_path / "cut", on_step=interrupt, **common)
    assert not (tmp_path / "cut" / "package").exists()
    listed = ward.checkpoint.list(tmp_path / "cut")
    assert [c["step"] for c in listed] == [per_epoch]
    assert not listed[0]["verified"]

    # Resuming verifies the checkpoint first: an untrusted signer is refused.
    with pytest.raises(ward.VerificationError):
        ward.train(spec, resume=tmp_path / "cut", trust=keys["other"]["public_key"], **common)
    resumed = ward.train(spec, resume=tmp_path / "cut", trust=keys["release"]["public_key"], **common)
    assert resumed.steps == whole.steps and resumed.seed == whole.seed
    assert weights(tmp_path / "cut") == weights(tmp_path / "whole")


def test_checkpoints_are_verified_before_they_are_decrypted_and_export_to_mxnet(tmp_path, keys):
    spec = write_spec(tmp_path)
    secret = passphrase(tmp_path)
    ward.train(spec, out=tmp_path / "run", sign_key=keys["release"]["private_key"], passphrase_file=secret)
    [entry] = ward.checkpoint.list(tmp_path / "run")
    path = entry["path"]
    info = ward.checkpoint.verify(path, keys["release"]["public_key"])
    assert info["verified"] and info["signers"] and info["model"] == "lenet"
    assert info["step"] == entry["step"] and info["epoch"] == 1
    with pytest.raises(ward.VerificationError):
        ward.checkpoint.verify(path, keys["other"]["public_key"])

    state = ward.checkpoint.load(path, keys["release"]["public_key"], passphrase_file=secret)
    assert state["optimizer"]["name"] == "sgd"
    assert state["index"]["step"] == entry["step"]
    conv = state["params"]["conv1_weight"]
    assert conv["weight"].dtype == np.float32 and conv["trainable"]
    assert conv["state"]["momentum"].shape == conv["weight"].shape
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not the passphrase\n")
    os.chmod(wrong, stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(ward.VerificationError):
        ward.checkpoint.load(path, keys["release"]["public_key"], passphrase_file=wrong)
    with pytest.raises(ward.InputError):
        ward.checkpoint.load(path, keys["release"]["public_key"])

    written = ward.checkpoint.export_mxnet(
        path,
        keys["release"]["public_key"],
        symbol=MODELS / "lenet_module" / "model-symbol.json",
        out=tmp_path / "mx" / "lenet",
        passphrase_file=secret,
    )
    assert [os.path.basename(p) for p in written] == ["lenet-symbol.json", "lenet-0001.params", "lenet-0001.states"]
    with pytest.raises(ward.WardError, match="exists"):
        ward.checkpoint.export_mxnet(
            path,
            keys["release"]["public_key"],
            symbol=MODELS / "lenet_module" / "model-symbol.json",
            out=tmp_path / "mx" / "lenet",
            passphrase_file=secret,
        )


def test_train_refuses_bad_arguments_before_anything_is_written(tmp_path):
    spec = write_spec(tmp_path)
    with pytest.raises(ward.InputError):
        ward.train(spec)
    with pytest.raises(ward.InputError):
        ward.train(spec, out=tmp_path / "a", resume=tmp_path / "b")
    with pytest.raises(ward.InputError):
        ward.train(spec, out=tmp_path / "a", on_step="not callable")
    with pytest.raises(ward.InputError):
        ward.train(spec, out=tmp_path / "a", seed=1.5)
    with pytest.raises(ward.InputError, match="encrypted"):
        ward.train(spec, out=tmp_path / "a", checkpoint_every=2)
    with pytest.raises(ward.WardError, match="cannot read"):
        ward.train(tmp_path / "missing.toml", out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_evaluate_measures_what_ward_eval_measures_and_plot_draws_the_run(tmp_path, keys):
    spec = write_spec(tmp_path)
    mnist = REPO / "tests" / "fixtures" / "mnist"
    data = tmp_path / "val.toml"
    data.write_text(
        f"""format = "recordio"
rec = "{mnist / 't10k.rec'}"
idx = "{mnist / 't10k.idx'}"
data_shape = [1, 28, 28]
scale = 0.00392156862745098
"""
    )
    result = ward.train(spec, out=tmp_path / "run", sign_key=keys["release"]["private_key"])
    package = ward.Package.open(result.package, trust=keys["release"]["public_key"])
    measured = ward.evaluate(package, data, metrics=["top_k_accuracy=3", "perplexity"])
    cli = json.loads(
        run_ward(
            "eval", result.package, "--trust", keys["release"]["public_key"], "--data", data,
            "--metric", "top_k_accuracy=3", "--metric", "perplexity", "--json",
        ).stdout
    )
    assert measured["examples"] == cli["examples"] == 1000
    for key in ("accuracy", "cross_entropy", "top_k_accuracy_3", "perplexity"):
        assert measured[key] == pytest.approx(cli[key], rel=1e-9), key
    assert 0 < measured["accuracy"] <= measured["top_k_accuracy_3"] <= 1
    with pytest.raises(ward.InputError):
        ward.evaluate(package, data, metrics=["no_such_metric"])

    def broken(batch):
        raise Interrupted("from predict")

    with pytest.raises(Interrupted):
        ward._ward.evaluate(str(data), broken)

    png = ward.plot(Path(result.run_dir) / "metrics.jsonl", tmp_path / "curves.png", width=400, height=200)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (tmp_path / "curves.png").read_bytes() == png
    with pytest.raises(ward.WardError, match="exists"):
        ward.plot(Path(result.run_dir) / "metrics.jsonl", tmp_path / "curves.png")
