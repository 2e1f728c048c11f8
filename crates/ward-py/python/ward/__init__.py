"""ward: run, sign and verify MXNet models without MXNet.

Open a signed package and predict on NumPy arrays::

    import numpy as np
    import ward

    model = ward.Package.open("resnet18.ward", trust="keys/release.pub")
    out = model.predict(data=np.zeros((1, 3, 224, 224), np.float32))

Every function checks what ``ward`` the command checks, with the same defaults and
refusals: a package opens only when its signatures verify against ``trust`` (over the
very bytes then parsed), and every input is checked against the package's declared
schema (dtype, shape, range, NaN) before any tensor reaches an operator. Errors are
:class:`WardError` and its subclasses, never a crash.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from . import _ward
from ._ward import (
    InputError,
    LimitError,
    ModelError,
    VerificationError,
    WardError,
    __version__,
)

__all__ = [
    "Package",
    "WardError",
    "VerificationError",
    "InputError",
    "ModelError",
    "LimitError",
    "keygen",
    "sign",
    "verify",
    "import_mxnet",
    "export_onnx",
    "train",
    "TrainResult",
    "evaluate",
    "plot",
    "checkpoint",
    "mxnet",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
#: An input declaration: ``(dtype, shape)``, or a dict with ``dtype``, ``shape`` and
#: optionally ``range`` (inclusive ``(min, max)``) and ``allow_nonfinite``.
InputDeclaration = Union[Tuple[str, Sequence[int]], Mapping[str, Any]]

_warned = set()
_warned_lock = threading.Lock()


def _warn_once(key: str, message: str) -> None:
    """Warns (``warnings`` and stderr through ``logging``'s last resort) once per process."""
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    warnings.warn(message, UserWarning, stacklevel=3)


def _path(value: Any, what: str) -> str:
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise InputError(f"{what} must be a path (str or os.PathLike), not {type(value).__name__}")


def _optional_path(value: Any, what: str) -> Optional[str]:
    return None if value is None else _path(value, what)


def _declarations(inputs: Any) -> List[Tuple[str, str, List[int], Optional[Tuple[float, float]], bool]]:
    """The declared inputs in the form ``ward._ward`` takes, each checked for its type."""
    if not isinstance(inputs, Mapping) or not inputs:
        raise InputError(
            "inputs must be a non-empty dict: name -> (dtype, shape) or "
            "{'dtype': ..., 'shape': ..., 'range': (min, max), 'allow_nonfinite': bool}"
        )
    out = []
    for name, decl in inputs.items():
        if not isinstance(name, str):
            raise InputError(f"input name {name!r} must be a str")
        if isinstance(decl, Mapping):
            unknown = set(decl) - {"dtype", "shape", "range", "allow_nonfinite"}
            if unknown:
                raise InputError(f"input {name!r}: unknown keys {sorted(unknown)}")
            try:
                dtype, shape = decl["dtype"], decl["shape"]
            except KeyError as e:
                raise InputError(f"input {name!r}: missing {e.args[0]!r}") from None
            value_range = decl.get("range")
            allow_nonfinite = decl.get("allow_nonfinite", False)
        elif isinstance(decl, (tuple, list)) and len(decl) == 2:
            dtype, shape = decl
            value_range, allow_nonfinite = None, False
        else:
            raise InputError(f"input {name!r}: declare it as (dtype, shape) or a dict")
        dtype = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if not isinstance(shape, (tuple, list)) or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in shape
        ):
            raise InputError(f"input {name!r}: shape must be a sequence of ints (-1 = variable)")
        if value_range is not None:
            if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
                raise InputError(f"input {name!r}: range must be (min, max)")
            value_range = (float(value_range[0]), float(value_range[1]))
        if not isinstance(allow_nonfinite, bool):
            raise InputError(f"input {name!r}: allow_nonfinite must be a bool")
        out.append((name, dtype, [int(d) for d in shape], value_range, allow_nonfinite))
    return out


class Package:
    """A model ready to predict: a ward package opened through the verified loader, or
    MXNet files opened with pinned digests (:func:`ward.mxnet.load`).

    Thread-safe: several Python threads may call :meth:`predict` at once; the GIL is
    released while ward computes, and each gets the same answer as one thread would.
    """

    __slots__ = ("_inner",)

    def __init__(self, inner: "_ward.Package") -> None:
        if not isinstance(inner, _ward.Package):
            raise TypeError("use Package.open(path, trust=...) or ward.mxnet.load(...)")
        self._inner = inner

    @classmethod
    def open(
        cls,
        path: PathLike,
        trust: Optional[PathLike] = None,
        *,
        allow_unsigned: bool = False,
        threads: int = 1,
        max_weights_bytes: Optional[int] = None,
        max_graph_bytes: Optional[int] = None,
    ) -> "Package":
        """Opens the package directory ``path``, verifying its signatures against
        ``trust`` (a PEM public key or a TOML trust policy) before parsing the same bytes.

        ``allow_unsigned=True`` opens it without checking any signature (local
        experiments only; warns). ``threads`` is the compute threads per call.
        Raises :class:`VerificationError` for a tampered, unsigned or untrusted package.
        """
        if not isinstance(allow_unsigned, bool):
            raise InputError("allow_unsigned must be a bool")
        if allow_unsigned and trust is None:
            _warn_once(
                "allow_unsigned",
                "ward: allow_unsigned=True: the package's signatures are NOT checked; "
                "anything in it will be loaded. Use this for local experiments only.",
            )
        threads = _threads(threads)
        return cls(
            _ward.open_package(
                _path(path, "path"),
                _optional_path(trust, "trust"),
                allow_unsigned,
                threads,
                _size(max_weights_bytes, "max_weights_bytes"),
                _size(max_graph_bytes, "max_graph_bytes"),
            )
        )

    @property
    def name(self) -> str:
        """The model's name."""
        return self._inner.name

    @property
    def version(self) -> str:
        """The model's version."""
        return self._inner.version

    @property
    def inputs(self) -> List[Dict[str, Any]]:
        """The declared inputs: ``name``, ``dtype``, ``shape`` (-1 for a variable
        dimension), ``range`` (inclusive, or None) and ``allow_nonfinite``."""
        return self._inner.inputs

    @property
    def outputs(self) -> List[Dict[str, Any]]:
        """The outputs: ``name``, ``dtype``, ``shape`` (-1 for a variable dimension)."""
        return self._inner.outputs

    @property
    def signers(self) -> List[str]:
        """Who signed the package (empty if it was not verified)."""
        return self._inner.signers

    @property
    def verified(self) -> bool:
        """Whether the signatures were checked against a trust policy."""
        return self._inner.verified

    @property
    def warnings(self) -> List[str]:
        """The verification's warnings."""
        return self._inner.warnings

    @property
    def pins(self) -> Optional[Dict[str, str]]:
        """For :func:`ward.mxnet.load`: the SHA-256 pins the files were checked against."""
        return self._inner.pins

    @property
    def operators(self) -> Dict[str, int]:
        """Each operator of the graph, with how many nodes use it."""
        return self._inner.operators

    def predict(self, inputs: Optional[Mapping[str, np.ndarray]] = None, /, **named: np.ndarray) -> Dict[str, np.ndarray]:
        """Runs the model: ``predict({"data": array})`` or ``predict(data=array)``.

        Every input must be a ``numpy.ndarray`` in the declared dtype (no silent casts);
        it is checked against the schema (names, dtype, shape, range, NaN) before the model
        runs, and :class:`InputError` (or :class:`LimitError`) names what is wrong.
        Returns ``{output name: numpy.ndarray}``; the arrays are ward's own buffers, handed
        over without a copy.
        """
        if inputs is None:
            given = named
        elif not isinstance(inputs, Mapping):
            raise InputError(f"inputs must be a dict of name -> numpy.ndarray, not {type(inputs).__name__}")
        elif named:
            given = dict(inputs)
            for name, value in named.items():
                if name in given:
                    raise InputError(f"input {name!r} is given twice")
                given[name] = value
        else:
            given = inputs
        arrays = []
        for name, value in given.items():
            if not isinstance(name, str):
                raise InputError(f"input name {name!r} must be a str")
            if not isinstance(value, np.ndarray):
                raise InputError(f"input {name!r} must be a numpy.ndarray, not {type(value).__name__}")
            dtype = value.dtype
            # Booleans, integers and floats only: no objects, strings, dates or complex.
            if dtype.kind not in "biuf":
                raise InputError(f"input {name!r}: NumPy dtype {dtype} is not one ward computes with")
            # C order and native byte order, copied only when the array is not already.
            if dtype.byteorder == ">":
                value = value.astype(dtype.newbyteorder("="))
            if not value.flags.c_contiguous:
                value = np.ascontiguousarray(value)
            arrays.append((name, value))
        return {name: buffer.view(_dtype(descr)).reshape(shape) for name, buffer, descr, shape in self._inner._predict(arrays)}

    __call__ = predict

    def export_onnx(self, out: PathLike, shapes: Optional[Mapping[str, Sequence[int]]] = None) -> int:
        """Writes the model as ONNX (opset 17) for concrete input shapes (a variable
        dimension not given is 1); never overwrites ``out``. Returns the bytes written."""
        shapes = {} if shapes is None else shapes
        if not isinstance(shapes, Mapping):
            raise InputError("shapes must be a dict: input name -> shape")
        checked = {}
        for name, shape in shapes.items():
            if not isinstance(shape, (tuple, list)) or not all(
                isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise InputError(f"shape of {name!r} must be a sequence of non-negative ints")
            checked[str(name)] = [int(d) for d in shape]
        return self._inner.export_onnx(_path(out, "out"), checked)

    def __repr__(self) -> str:
        return repr(self._inner)


_DTYPES: Dict[str, np.dtype] = {}


def _dtype(descr: str) -> np.dtype:
    """NumPy's dtype for a descr such as ``<f4``, made once."""
    dtype = _DTYPES.get(descr)
    if dtype is None:
        dtype = _DTYPES[descr] = np.dtype(descr)
    return dtype


def _threads(threads: Any) -> int:
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)):
        raise InputError("threads must be an int")
    cores = os.cpu_count() or 1
    if not 1 <= threads <= 4 * cores:
        raise InputError(f"threads must be 1 to {4 * cores} (4 per core; this machine has {cores})")
    return int(threads)


def _size(value: Any, what: str) -> Optional[int]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise InputError(f"{what} must be a non-negative int")
    return int(value)


def keygen(out: PathLike, name: str = "ward") -> Dict[str, Any]:
    """Makes an ECDSA P-256 signing key pair in ``out`` (created with mode 0700 if
    missing): ``NAME.key`` (private, mode 0600) and ``NAME.pub``. Never overwrites.
    Returns the two paths and the public key's hint."""
    if not isinstance(name, str):
        raise InputError("name must be a str")
    return _ward.keygen(_path(out, "out"), name)


def sign(
    model: PathLike,
    key: PathLike,
    *,
    signature: Optional[PathLike] = None,
    name: Optional[str] = None,
    shard_size: Optional[int] = None,
) -> Dict[str, Any]:
    """Signs a model directory (a ward package, an MXNet export folder, any folder) in
    the OpenSSF model-signing v1.0 format with the private key ``key``; writes
    ``MODEL/model.sig`` (or ``signature``), never over an existing file."""
    return _ward.sign(
        _path(model, "model"),
        _path(key, "key"),
        signature=_optional_path(signature, "signature"),
        name=name,
        shard_size=_size(shard_size, "shard_size"),
    )


def verify(
    model: PathLike,
    trust: PathLike,
    *,
    signatures: Iterable[PathLike] = (),
    max_weights_bytes: Optional[int] = None,
    max_graph_bytes: Optional[int] = None,
) -> Dict[str, Any]:
    """Checks a model's signatures against ``trust`` (a PEM public key or a TOML
    policy): every file's digest, no file missing or added, enough trusted signers.
    Returns the model name, signers and warnings; raises :class:`VerificationError`."""
    return _ward.verify(
        _path(model, "model"),
        _path(trust, "trust"),
        signatures=[_path(s, "signature") for s in signatures],
        max_weights_bytes=_size(max_weights_bytes, "max_weights_bytes"),
        max_graph_bytes=_size(max_graph_bytes, "max_graph_bytes"),
    )


def import_mxnet(
    *,
    symbol: PathLike,
    params: PathLike,
    inputs: Mapping[str, InputDeclaration],
    out: PathLike,
    sign_key: Optional[PathLike] = None,
    trust: Optional[PathLike] = None,
    name: Optional[str] = None,
    model_version: str = "1",
    output_precision: Optional[int] = None,
    output_top_k: Optional[int] = None,
    output_label_only: bool = False,
    allow_nonfinite_weights: bool = False,
) -> Dict[str, Any]:
    """Imports an MXNet 1.x export (``*-symbol.json`` + ``*.params``) into a ward package
    at ``out``, signed with ``sign_key`` when given. ``inputs`` declares every data input:
    ``{"data": ("float32", (-1, 3, 224, 224))}`` or a dict with ``range`` and
    ``allow_nonfinite``. With ``trust``, the two files' folder must be signed by it and is
    verified before either file is parsed."""
    return _ward.import_mxnet(
        _path(symbol, "symbol"),
        _path(params, "params"),
        _declarations(inputs),
        _path(out, "out"),
        sign_key=_optional_path(sign_key, "sign_key"),
        trust=_optional_path(trust, "trust"),
        name=name,
        model_version=model_version,
        output_precision=_size(output_precision, "output_precision"),
        output_top_k=_size(output_top_k, "output_top_k"),
        output_label_only=bool(output_label_only),
        allow_nonfinite_weights=bool(allow_nonfinite_weights),
    )


def export_onnx(
    package: PathLike,
    out: PathLike,
    *,
    trust: Optional[PathLike] = None,
    allow_unsigned: bool = False,
    shapes: Optional[Mapping[str, Sequence[int]]] = None,
) -> int:
    """Opens ``package`` (verified against ``trust``) and writes it as ONNX to ``out``,
    as ``ward export onnx`` does. Returns the bytes written."""
    return Package.open(package, trust, allow_unsigned=allow_unsigned).export_onnx(out, shapes)


def _paths(values: Any, what: str) -> List[str]:
    if isinstance(values, (str, os.PathLike)):
        return [_path(values, what)]
    return [_path(v, what) for v in values]


def _strings(values: Any, what: str) -> List[str]:
    if isinstance(values, str):
        return [values]
    out = list(values)
    if not all(isinstance(v, str) for v in out):
        raise InputError(f"{what} must be strings")
    return out


def _callable(value: Any, what: str) -> Any:
    if value is not None and not callable(value):
        raise InputError(f"{what} must be callable (it is called with a dict)")
    return value


@dataclass(frozen=True)
class TrainResult:
    """What a finished :func:`train` run left."""

    #: The run's directory: ``metrics.jsonl``, ``checkpoints/``, ``package/``.
    run_dir: str
    #: The trained package (signed when a ``sign_key`` was given).
    package: str
    #: The model's name in the package.
    model: str
    signed: bool
    #: The run's seed (64 hex digits): the same seed repeats the run bit for bit.
    seed: str
    #: Steps done in the whole run.
    steps: int
    #: Epochs completed (fewer than the spec's when a callback ended the run early).
    epochs: int
    #: Whether a callback ended the run before its last epoch.
    stopped_early: bool
    #: The last validation's metrics (``val_loss``, ``val_accuracy``, ``val_NAME``).
    validation: Dict[str, float] = field(default_factory=dict)


def train(
    config: PathLike,
    *,
    out: Optional[PathLike] = None,
    resume: Optional[PathLike] = None,
    sign_key: Optional[PathLike] = None,
    trust: Optional[PathLike] = None,
    allow_unsigned: bool = False,
    seed: Union[int, str, None] = None,
    on_step: Optional[Callable[[Dict[str, Any]], Any]] = None,
    on_epoch: Optional[Callable[[Dict[str, Any]], Any]] = None,
    logger: Any = None,
    recipients: Iterable[str] = (),
    recipients_files: Iterable[PathLike] = (),
    passphrase_file: Optional[PathLike] = None,
    checkpoint_every: Optional[int] = None,
    keep_last: int = 3,
    keep_every: Optional[int] = None,
    keep_best: Optional[str] = None,
    from_checkpoint: Optional[str] = None,
    identities: Iterable[PathLike] = (),
    allow_spec_change: bool = False,
) -> TrainResult:
    """Trains as ``ward train --config CONFIG`` does and returns a :class:`TrainResult`.

    ``config`` is a training spec (``train.toml``: the model, MXNet files or a ward package
    verified against ``trust``, the data, the declared loss, optimizer and schedule; paths
    in it are relative to its folder). A new run writes the new directory ``out``;
    ``resume`` continues the run in that directory from its newest checkpoint (or
    ``from_checkpoint``), verified against ``trust`` and decrypted with ``identities``
    (age identity files) or ``passphrase_file``, so that it ends where an uninterrupted
    run would. The seed comes from the operating system unless given.

    Checkpoints are written when they can be encrypted (``recipients``: ``age1…`` keys,
    ``recipients_files``, or ``passphrase_file``) and signed (``sign_key``): at each
    epoch's end and every ``checkpoint_every`` steps, the newest ``keep_last`` kept (and
    every ``keep_every``-th step, and the best by ``keep_best``).

    ``on_step(event)`` is called after every step with ``epoch``, ``step``, ``loss``,
    ``accuracy`` (classifiers), ``samples_per_s`` and, every ``log_every`` steps,
    ``window_loss``/``window_accuracy``; ``on_epoch(event)`` after every epoch with
    ``train_loss``, ``train_accuracy``, the validation metrics and ``summary``. A
    callback that returns ``False`` ends the run early: the weights so far are
    checkpointed and written as the package. One that raises (or Ctrl-C) abandons the
    run: the exception propagates, no package is written, and the checkpoints written so
    far stay for ``resume``. The run's notes go to ``logger`` (default: the ``logging``
    logger ``ward.train``). The GIL is released while ward trains.
    """
    if (out is None) == (resume is None):
        raise InputError("give out= (a new run) or resume= (a run's directory), not both")
    if not isinstance(allow_unsigned, bool) or not isinstance(allow_spec_change, bool):
        raise InputError("allow_unsigned and allow_spec_change must be bools")
    if allow_unsigned and trust is None:
        _warn_once(
            "train_allow_unsigned",
            "ward.train(allow_unsigned=True): the package model's signatures are NOT "
            "checked; anything in it will be loaded. Use this for local experiments only.",
        )
    if isinstance(seed, bool) or not (seed is None or isinstance(seed, (int, str))):
        raise InputError("seed must be an int or a str (a number or 64 hex digits)")
    if keep_best is not None and not isinstance(keep_best, str):
        raise InputError("keep_best must be a metric name (a str)")
    if from_checkpoint is not None and not isinstance(from_checkpoint, str):
        raise InputError("from_checkpoint must be a checkpoint name (step-NNNNNNNNNNNN)")
    for value, what in ((checkpoint_every, "checkpoint_every"), (keep_every, "keep_every")):
        if value is not None and _size(value, what) == 0:
            raise InputError(f"{what} must be at least 1")
    if _size(keep_last, "keep_last") == 0:
        raise InputError("keep_last must be at least 1")
    result = _ward.train(
        _path(config, "config"),
        out=_optional_path(out, "out"),
        resume=_optional_path(resume, "resume"),
        sign_key=_optional_path(sign_key, "sign_key"),
        trust=_optional_path(trust, "trust"),
        allow_unsigned=allow_unsigned,
        seed=None if seed is None else str(seed),
        on_step=_callable(on_step, "on_step"),
        on_epoch=_callable(on_epoch, "on_epoch"),
        logger=logger,
        recipients=_strings(recipients, "recipients"),
        recipients_files=_paths(recipients_files, "recipients_files"),
        passphrase_file=_optional_path(passphrase_file, "passphrase_file"),
        checkpoint_every=_size(checkpoint_every, "checkpoint_every"),
        keep_last=int(keep_last),
        keep_every=_size(keep_every, "keep_every"),
        keep_best=keep_best,
        from_checkpoint=from_checkpoint,
        identities=_paths(identities, "identities"),
        allow_spec_change=allow_spec_change,
    )
    return TrainResult(
        run_dir=os.fspath(result["run_dir"]),
        package=os.fspath(result["package"]),
        model=result["model"],
        signed=result["signed"],
        seed=result["seed"],
        steps=result["steps"],
        epochs=result["epochs"],
        stopped_early=result["stopped_early"],
        validation=dict(result["validation"]),
    )


def evaluate(
    package: Package,
    data: PathLike,
    *,
    batch_size: int = 64,
    metrics: Iterable[str] = (),
    softmax: bool = False,
) -> Dict[str, Any]:
    """Measures ``package`` on labelled data as ``ward eval`` does: ``data`` is a TOML file
    describing the data as a training spec's ``[data.val]`` does (``format = "mnist" |
    "recordio" | "csv" | "npy"`` and its files, relative to it), or a training spec,
    whose validation data is used. Each batch goes through :meth:`Package.predict` (the
    same checks as serving); the package's first output must hold one row of class
    probabilities per example (or scores: ``softmax=True``). Returns ``examples``,
    ``correct``, ``accuracy``, ``cross_entropy`` and each of ``metrics`` (MXNet's names:
    ``"top_k_accuracy=3"``, ``"perplexity"``, ``"mse"``, ...) by its key."""
    if not isinstance(package, Package):
        raise InputError("package must be a ward.Package (Package.open or ward.mxnet.load)")
    inputs = package.inputs
    if len(inputs) != 1:
        raise InputError(f"ward.evaluate feeds one data input; the package declares {len(inputs)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise InputError("batch_size must be an int")
    name = inputs[0]["name"]
    first = package.outputs[0]["name"]

    def predict(batch: np.ndarray) -> np.ndarray:
        return np.asarray(package.predict({name: batch})[first], dtype=np.float32)

    return _ward.evaluate(
        _path(data, "data"),
        predict,
        batch_size=batch_size,
        metrics=_strings(metrics, "metrics"),
        softmax=bool(softmax),
    )


def plot(
    log: PathLike,
    out: Optional[PathLike] = None,
    *,
    width: int = 1200,
    height: int = 500,
    force: bool = False,
) -> bytes:
    """Draws the curves of a run's ``metrics.jsonl`` (loss, accuracy, validation metrics
    by step and epoch) as a PNG, as ``ward plot`` does. Returns the PNG's bytes, and
    writes them to ``out`` when given (an existing file only with ``force=True``)."""
    for value, what in ((width, "width"), (height, "height")):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InputError(f"{what} must be a positive int")
    png = _ward.plot(_path(log, "log"), width=width, height=height)
    if out is not None:
        path = _path(out, "out")
        if os.path.lexists(path):
            if not force:
                raise WardError(f"{path} exists; pass force=True to replace it")
            if not os.path.isfile(path) or os.path.islink(path):
                raise WardError(f"{path} exists and is not a regular file; ward replaces only a file")
            os.remove(path)
        with open(path, "xb") as f:
            f.write(png)
    return png


from . import checkpoint  # noqa: E402  (the submodules use the names above)
from . import mxnet  # noqa: E402
