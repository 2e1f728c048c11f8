"""examples/python/classify_ward.py prints exactly what its MXNet twin printed.

expected-output.txt comes from classify_mxnet.py on real MXNet 1.9.1
(tools/examples/regenerate-expected.sh); MXNet is not in CI, so this pins the ward
version to that recorded output.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "python"


def test_classify_ward_prints_what_mxnet_printed(tmp_path):
    images = tmp_path / "images.npy"
    subprocess.run([sys.executable, EXAMPLE / "make_images.py", images], cwd=REPO, check=True)
    done = subprocess.run(
        [sys.executable, EXAMPLE / "classify_ward.py", "tests/fixtures/models/resnet18_v1", images],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == (EXAMPLE / "expected-output.txt").read_text()
