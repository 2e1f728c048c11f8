#!/usr/bin/env python3
"""Checks of run_ward.py's detection comparison (numpy only; no MXNet, no ward):

    .venv-zoo/bin/python tools/zoo/test_run_ward.py
"""

import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run_ward  # noqa: E402


def head(scores, boxes):
    """A (1, N) detection head: ids, scores, boxes."""
    n = len(scores)
    ids = np.arange(n, dtype=np.float32).reshape(1, n, 1) % 3
    return [ids, np.array(scores, np.float32).reshape(1, n, 1), np.array(boxes, np.float32).reshape(1, n, 4)]


def boxes(n):
    return [[10.0 * i, 0.0, 10.0 * i + 5.0, 5.0] for i in range(n)]


class CompareDetections(unittest.TestCase):
    def test_identical_rows_match_in_place(self):
        mx = head([0.9, 0.5, 0.1], boxes(3))
        self.assertEqual(run_ward.compare_detections(mx, [a.copy() for a in mx]), (True, 0, ""))

    def test_rows_with_equal_scores_may_swap(self):
        mx = head([0.9, 0.5, 0.5, 0.1], boxes(4))
        ward = [a.copy() for a in mx]
        for a in ward:
            a[0, [1, 2]] = a[0, [2, 1]]
        self.assertEqual(run_ward.compare_detections(mx, ward), (True, 2, ""))

    def test_rows_with_distinct_scores_may_not_swap(self):
        mx = head([0.9, 0.5, 0.1], boxes(3))
        ward = [a.copy() for a in mx]
        for a in ward:
            a[0, [0, 1]] = a[0, [1, 0]]
        ok, _, why = run_ward.compare_detections(mx, ward)
        self.assertFalse(ok)
        self.assertIn("row 0", why)

    def test_a_tied_row_must_still_be_one_of_mxnets(self):
        # Same score, another box: a different candidate won a tie (a changed decision).
        mx = head([0.9, 0.5, 0.5, 0.1], boxes(4))
        ward = [a.copy() for a in mx]
        ward[2][0, 2] += 3.0
        ok, _, why = run_ward.compare_detections(mx, ward)
        self.assertFalse(ok)
        self.assertIn("rows 1..2", why)

    def test_matching_reassigns_a_row_placed_in_place(self):
        # Ward row 0 fits MXNet rows 0 and 1, ward row 1 only MXNet row 0: the matching
        # must move ward row 0 to MXNet row 1 rather than keep it in place.
        mx = head([0.5, 0.5], [[0, 0, 1, 1], [0, 0, 1, 1.00008]])
        mx[0][0, :, 0] = 0
        ward = [a.copy() for a in mx]
        ward[2][0, 0] = [0, 0, 1, 1.00004]
        ward[2][0, 1] = [0, 0, 1, 0.99996]
        self.assertEqual(run_ward.compare_detections(mx, ward), (True, 2, ""))

    def test_padding_rows_form_one_cheap_group(self):
        n = 20000
        mx = head([0.9] + [-1.0] * (n - 1), [[1, 1, 2, 2]] + [[-1, -1, -1, -1]] * (n - 1))
        mx[0][0, 1:, 0] = -1
        self.assertEqual(run_ward.compare_detections(mx, [a.copy() for a in mx]), (True, 0, ""))

    def test_shapes_must_agree(self):
        mx = head([0.9, 0.5], boxes(2))
        ward = [a.copy() for a in mx]
        ward[2] = ward[2][:, :1]
        self.assertFalse(run_ward.compare_detections(mx, ward)[0])

    def test_the_second_output_must_be_a_score_column(self):
        mx = head([0.9, 0.5], boxes(2))
        mx[1] = mx[2]
        self.assertFalse(run_ward.compare_detections(mx, [a.copy() for a in mx])[0])


if __name__ == "__main__":
    unittest.main()
