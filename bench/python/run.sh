#!/usr/bin/env bash
# The Python binding's benchmark: ward's wheel, onnxruntime (on ward's own `export onnx` of
# each model) and MXNet 1.9.1, each from Python with one compute thread per call, on the
# fixture models: per-call overhead (MLP, batch 1), whole-model times (ResNet-18,
# MobileNet 0.25, SqueezeNet 1.1 at batch 1 and 8), two Python threads against one, and
# RSS over 10,000 calls. Needs the MXNet venv (DEVELOPERS.md) and PyPI on first use.
# Prints a Markdown report for docs/BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=scripts/lib-venv.sh
source scripts/lib-venv.sh
mx=${MXNET_PYTHON:-.venv-mx/bin/python}
target=${CARGO_TARGET_DIR:-target}

pinned_venv .venv-pybench tools/python-bench-requirements.txt
echo "== maturin build --release" >&2
rm -rf "$target/bench-wheels"
.venv-pybench/bin/maturin build --locked --release --quiet \
    --manifest-path crates/ward-py/Cargo.toml --out "$target/bench-wheels" >&2
.venv-pybench/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
    --no-index --no-deps --force-reinstall "$target"/bench-wheels/ward-*.whl

work=bench/out/python
rm -rf "$work"
mkdir -p "$work"
.venv-pybench/bin/python - "$work" <<'PY' >&2
import json, sys
from pathlib import Path
import ward

work = Path(sys.argv[1])
fixtures = Path("tests/fixtures/models")
keys = ward.keygen(work / "keys", "bench")
for name in ["mlp", "resnet18_v1", "mobilenet0_25", "squeezenet1_1"]:
    (i,) = json.loads((fixtures / name / "meta.json").read_text())["inputs"]
    ward.import_mxnet(
        symbol=fixtures / name / "model-symbol.json",
        params=fixtures / name / "model-0000.params",
        inputs={i["name"]: (i["dtype"], [-1, *i["shape"][1:]])},
        out=work / f"{name}.ward",
        sign_key=keys["private_key"],
    )
    for batch in (1, 8):
        ward.export_onnx(work / f"{name}.ward", work / f"{name}-b{batch}.onnx",
                         trust=keys["public_key"], shapes={i["name"]: [batch, *i["shape"][1:]]})
print("prepared", work)
PY

# One compute thread everywhere: OMP and oneDNN for MXNet, the session options for
# onnxruntime, `threads=1` for ward.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
w=$(.venv-pybench/bin/python bench/python/measure.py ward "$work")
o=$(.venv-pybench/bin/python bench/python/measure.py onnxruntime "$work")
m=$("$mx" bench/python/measure.py mxnet "$work" 2>/dev/null)
.venv-pybench/bin/python bench/python/report.py "$w" "$o" "$m"
