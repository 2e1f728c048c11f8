"""MXNet files opened in memory with their digests pinned by the caller.

For applications that still ship raw MXNet exports: the SHA-256 of each file is checked
over the very bytes that are then parsed (never hashed and reopened), so a file swapped on
disk is refused before any of it is read as a model::

    model = ward.mxnet.load(
        "resnet18-symbol.json", "resnet18-0000.params",
        inputs={"data": ("float32", (-1, 3, 224, 224))},
        sha256={"symbol": "9f2c…", "params": "41ab…"},
    )
    model.predict(data=batch)

A signed ward package (``ward.import_mxnet`` + ``ward.Package.open``) is the better
choice: it proves who made the model, not only that it did not change.
"""

from __future__ import annotations

from typing import Mapping, Optional

from . import Package, PathLike, InputDeclaration, VerificationError, InputError, _declarations, _path, _threads, _warn_once, _ward

__all__ = ["load"]


def load(
    symbol: PathLike,
    params: PathLike,
    *,
    inputs: Mapping[str, InputDeclaration],
    sha256: Optional[Mapping[str, str]] = None,
    allow_unpinned: bool = False,
    threads: int = 1,
) -> Package:
    """Opens an MXNet export in memory and returns a :class:`ward.Package`.

    ``sha256`` pins both files by role: ``{"symbol": HEX, "params": HEX}``; a file whose
    digest differs raises :class:`ward.VerificationError` before anything is parsed.
    Without pins the call is refused unless ``allow_unpinned=True``, which warns once.
    ``inputs`` declares every data input as for :func:`ward.import_mxnet`.
    """
    if sha256 is None:
        if allow_unpinned is not True:
            raise VerificationError(
                "ward.mxnet.load: no sha256 pins; pin both files "
                '(sha256={"symbol": ..., "params": ...}) or pass allow_unpinned=True'
            )
        _warn_once(
            "allow_unpinned",
            "ward.mxnet.load(allow_unpinned=True): the MXNet files are NOT checked "
            "against any digest; a file swapped on disk would be loaded.",
        )
        pins = None
    else:
        if not isinstance(sha256, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in sha256.items()
        ):
            raise InputError('sha256 must be a dict {"symbol": HEX, "params": HEX}')
        pins = dict(sha256)
    return Package(
        _ward.load_mxnet(
            _path(symbol, "symbol"),
            _path(params, "params"),
            _declarations(inputs),
            pins,
            _threads(threads),
        )
    )
