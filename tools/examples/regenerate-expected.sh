#!/usr/bin/env bash
# Regenerates examples/python/expected-output.txt with real MXNet 1.9.1 (.venv-mx): what
# classify_mxnet.py prints for the fixture ResNet-18 and make_images.py's batch. CI checks
# that classify_ward.py prints exactly this (crates/ward-py/tests/test_example.py).
#
# MXNET_SUBGRAPH_BACKEND=NONE: MXNet's default oneDNN subgraph pass computes wrong numbers
# on some conv+BatchNorm graphs.
set -euo pipefail
cd "$(dirname "$0")/../.."

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.venv-mx/bin/python examples/python/make_images.py "$tmp/images.npy"
MXNET_SUBGRAPH_BACKEND=NONE .venv-mx/bin/python examples/python/classify_mxnet.py \
    tests/fixtures/models/resnet18_v1 "$tmp/images.npy" > examples/python/expected-output.txt
