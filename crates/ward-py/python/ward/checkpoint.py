"""A training run's checkpoints, as ``ward checkpoint`` handles them.

Checkpoints are encrypted with age and signed: :func:`verify` checks one against a trust
policy without decrypting anything, :func:`load` verifies it and only then decrypts and
parses it (weights and optimizer state as NumPy arrays), :func:`export_mxnet` writes it as
MXNet Module files. :func:`list` reads what each checkpoint says of itself, unverified::

    for c in ward.checkpoint.list("runs/lenet"):
        print(c["name"], c["step"], c["metrics"])
    state = ward.checkpoint.load(
        "runs/lenet/checkpoints/step-000000000120",
        trust="keys/trainer.pub", identities=["keys/age.txt"],
    )
    state["params"]["conv1_weight"]["weight"]  # a float32 ndarray
"""

from __future__ import annotations

import builtins
import json
import os
from typing import Any, Dict, Iterable, List, Optional

from . import InputError, PathLike, _optional_path, _path, _paths, _ward

__all__ = ["list", "verify", "load", "export_mxnet"]


def _index(text: str) -> Dict[str, Any]:
    """``checkpoint.json``'s fields, with the position's fields at the top level."""
    index = json.loads(text)
    position = index.pop("position", {})
    for key in ("step", "epoch", "batch"):
        index[key] = position.get(key)
    return index


def list(run: PathLike) -> List[Dict[str, Any]]:  # noqa: A001  (ward checkpoint list)
    """The checkpoints of the run directory ``run`` (or its ``checkpoints/``), oldest
    first: ``name``, ``path``, ``step``, ``epoch``, ``batch``, ``created``, ``encryption``,
    ``state_bytes``, ``metrics``, ... as each ``checkpoint.json`` says, NOT verified
    (``verified`` is False; :func:`verify` checks one). A checkpoint whose index cannot be
    read is listed with ``error``."""
    out: builtins.list = []
    for name, path, index, error in _ward.checkpoint_list(_path(run, "run")):
        entry: Dict[str, Any] = {"name": name, "path": os.fspath(path), "verified": False}
        if index is not None:
            entry.update(_index(index))
        else:
            entry["error"] = error
        out.append(entry)
    return out


def verify(checkpoint: PathLike, trust: PathLike) -> Dict[str, Any]:
    """Checks a checkpoint's signatures against ``trust`` (a PEM public key or a TOML
    policy) and its files against them, decrypting nothing. Returns its index (``model``,
    ``run``, ``spec_sha256``, ``step``, ``epoch``, ``batch``, ``metrics``, ...) with
    ``signers`` and ``warnings``; raises :class:`ward.VerificationError`."""
    index, signers, warnings = _ward.checkpoint_verify(
        _path(checkpoint, "checkpoint"), _path(trust, "trust")
    )
    out = _index(index)
    out.update(signers=signers, warnings=warnings, verified=True)
    return out


def _unsealing(identities: Any, passphrase_file: Any) -> Dict[str, Any]:
    identities = _paths(identities, "identities")
    passphrase_file = _optional_path(passphrase_file, "passphrase_file")
    if bool(identities) == (passphrase_file is not None):
        raise InputError("give identities=[KEY.txt] (age identity files) or passphrase_file=, one of them")
    return {"identities": identities, "passphrase_file": passphrase_file}


def load(
    checkpoint: PathLike,
    trust: PathLike,
    *,
    identities: Iterable[PathLike] = (),
    passphrase_file: Optional[PathLike] = None,
) -> Dict[str, Any]:
    """Verifies a checkpoint against ``trust``, then decrypts it with ``identities`` (age
    identity files) or ``passphrase_file`` and parses it. Returns ``index`` (as
    :func:`verify`), ``signers``, ``warnings``, ``optimizer`` (``name``, ``num_update``)
    and ``params``: name → ``weight`` (float32 ndarray), ``trainable``, ``update_count``,
    ``state`` (name → ndarray: momentum, Adam's moments, ...)."""
    loaded = _ward.checkpoint_load(
        _path(checkpoint, "checkpoint"), _path(trust, "trust"), **_unsealing(identities, passphrase_file)
    )
    loaded["index"] = _index(loaded["index"])
    return loaded


def export_mxnet(
    checkpoint: PathLike,
    trust: PathLike,
    *,
    symbol: PathLike,
    out: PathLike,
    identities: Iterable[PathLike] = (),
    passphrase_file: Optional[PathLike] = None,
    epoch: Optional[int] = None,
) -> List[str]:
    """Writes a verified, decrypted checkpoint as MXNet 1.9.1 Module files: ``OUT-symbol.json``
    (``symbol``, the symbol the run trained), ``OUT-EPOCH.params`` and ``OUT-EPOCH.states``
    (the optimizer's state as ``save_optimizer_states`` pickles it). MXNet resumes with
    ``mx.mod.Module.load(OUT, EPOCH, load_optimizer_states=True)``. The files are written
    in clear, never over an existing file. Returns their paths."""
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 2**32):
        raise InputError("epoch must be an int from 0 to 2**32 - 1")
    written = _ward.checkpoint_export_mxnet(
        _path(checkpoint, "checkpoint"),
        _path(trust, "trust"),
        _path(symbol, "symbol"),
        _path(out, "out"),
        epoch=epoch,
        **_unsealing(identities, passphrase_file),
    )
    return [os.fspath(p) for p in written]
