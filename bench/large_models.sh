#!/usr/bin/env bash
# Large models loaded and run once (issue 20, item 6): a whole `ward predict` (signature
# check, parsing, plan building, the forward) against MXNet 1.9.1's load + first forward,
# with peak memory, for AlexNet, VGG16 and vgg11_bn. Needs the MXNet venv (DEVELOPERS.md)
# and the zoo's models (tools/zoo/export_zoo.py --only 'alexnet' / 'vgg11_bn'); VGG16
# (224x224, too large for the zoo's list) is made here into ZOO/extra/vgg16.
#   WARD=target/release/ward ZOO=~/.cache/ward-zoo REPEATS=3 bench/large_models.sh
# Results: bench/out/large_models/results.json and a Markdown table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${MXNET_PYTHON:-.venv-mx/bin/python}
ward=${WARD:-target/release/ward}
zoo=${ZOO:-$HOME/.cache/ward-zoo}
repeats=${REPEATS:-3}
[ -n "${WARD:-}" ] || cargo build --locked --release -p ward-cli
"$py" bench/large_models.py make-vgg16 "$zoo"
"$py" bench/large_models.py run "$ward" "$zoo" bench/out/large_models "$repeats" \
    mxnet/alexnet extra/vgg16 mxnet/vgg11_bn
