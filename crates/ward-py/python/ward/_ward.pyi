"""Type stubs of the extension module ``ward._ward`` (the Rust side of the binding).
Applications use the ``ward`` package, whose functions check their arguments' types and
call these."""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

__version__: str

class WardError(Exception): ...
class VerificationError(WardError): ...
class InputError(WardError): ...
class ModelError(WardError): ...
class LimitError(WardError): ...

_InputDecl = Tuple[str, str, List[int], Optional[Tuple[float, float]], bool]

class Package:
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def inputs(self) -> List[Dict[str, Any]]: ...
    @property
    def outputs(self) -> List[Dict[str, Any]]: ...
    @property
    def signers(self) -> List[str]: ...
    @property
    def verified(self) -> bool: ...
    @property
    def warnings(self) -> List[str]: ...
    @property
    def pins(self) -> Optional[Dict[str, str]]: ...
    @property
    def operators(self) -> Dict[str, int]: ...
    def _predict(self, inputs: Sequence[Tuple[str, np.ndarray]]) -> List[Tuple[str, np.ndarray, str, List[int]]]: ...
    def export_onnx(self, out: str, shapes: Mapping[str, Sequence[int]] = ...) -> int: ...

def open_package(
    path: str,
    trust: Optional[str],
    allow_unsigned: bool,
    threads: int,
    max_weights_bytes: Optional[int] = ...,
    max_graph_bytes: Optional[int] = ...,
) -> Package: ...
def load_mxnet(
    symbol: str,
    params: str,
    inputs: Sequence[_InputDecl],
    sha256: Optional[Mapping[str, str]],
    threads: int,
) -> Package: ...
def keygen(out: str, name: str = ...) -> Dict[str, Any]: ...
def sign(
    model: str,
    key: str,
    *,
    signature: Optional[str] = ...,
    name: Optional[str] = ...,
    shard_size: Optional[int] = ...,
) -> Dict[str, Any]: ...
def verify(
    model: str,
    trust: str,
    *,
    signatures: Sequence[str] = ...,
    max_weights_bytes: Optional[int] = ...,
    max_graph_bytes: Optional[int] = ...,
) -> Dict[str, Any]: ...
def import_mxnet(
    symbol: str,
    params: str,
    inputs: Sequence[_InputDecl],
    out: str,
    *,
    sign_key: Optional[str] = ...,
    trust: Optional[str] = ...,
    name: Optional[str] = ...,
    model_version: str = ...,
    output_precision: Optional[int] = ...,
    output_top_k: Optional[int] = ...,
    output_label_only: bool = ...,
    allow_nonfinite_weights: bool = ...,
) -> Dict[str, Any]: ...
def train(
    config: str,
    *,
    out: Optional[str] = ...,
    resume: Optional[str] = ...,
    sign_key: Optional[str] = ...,
    trust: Optional[str] = ...,
    allow_unsigned: bool = ...,
    seed: Optional[str] = ...,
    on_step: Optional[Callable[[Dict[str, Any]], Any]] = ...,
    on_epoch: Optional[Callable[[Dict[str, Any]], Any]] = ...,
    logger: Any = ...,
    recipients: Sequence[str] = ...,
    recipients_files: Sequence[str] = ...,
    passphrase_file: Optional[str] = ...,
    checkpoint_every: Optional[int] = ...,
    keep_last: int = ...,
    keep_every: Optional[int] = ...,
    keep_best: Optional[str] = ...,
    from_checkpoint: Optional[str] = ...,
    identities: Sequence[str] = ...,
    allow_spec_change: bool = ...,
    max_weights_bytes: Optional[int] = ...,
    max_graph_bytes: Optional[int] = ...,
) -> Dict[str, Any]: ...
def checkpoint_list(run: str) -> List[Tuple[str, str, Optional[str], Optional[str]]]: ...
def checkpoint_verify(checkpoint: str, trust: str) -> Tuple[str, List[str], List[str]]: ...
def checkpoint_load(
    checkpoint: str,
    trust: str,
    *,
    identities: Sequence[str] = ...,
    passphrase_file: Optional[str] = ...,
) -> Dict[str, Any]: ...
def checkpoint_export_mxnet(
    checkpoint: str,
    trust: str,
    symbol: str,
    out: str,
    *,
    identities: Sequence[str] = ...,
    passphrase_file: Optional[str] = ...,
    epoch: Optional[int] = ...,
) -> List[str]: ...
def evaluate(
    data: str,
    predict: Callable[[np.ndarray], np.ndarray],
    *,
    batch_size: int = ...,
    metrics: Sequence[str] = ...,
    softmax: bool = ...,
) -> Dict[str, Any]: ...
def plot(log: str, *, width: int = ..., height: int = ...) -> bytes: ...
