//! Ordering (MXNet 1.9.1): `topk`, `sort` and `argsort`, in MXNet's order among equal
//! elements.
//!
//! MXNet's CPU kernel orders each lane's indices with the C++ standard library built into
//! it (libstdc++): `std::sort` (an introsort: median-of-three quicksort partitions, a
//! heapsort below a depth of 2·⌊log₂ n⌋, insertion sort of the last runs of 16) when
//! `k·8 > n`, else `std::partial_sort` (a heap of the first k, then heapsort), comparing
//! by `<` (ascending) or `>` (descending). Neither is stable: equal elements come out in
//! an order that depends on the lane's values and length (a lane of at most 16 under a
//! full sort is insertion-sorted, so stable). A NaN compares false both ways and stays
//! where the algorithm leaves it. [`mxnet_order`] replays those algorithms step for step,
//! so that ward gives the same indices, checked against MXNet on thousands of lanes full
//! of ties and NaN (`tools/make_op_fixtures.py`, the `topk_`, `sort_`, `argsort_` cases).
//! Where libstdc++'s unguarded loops would read past the lane (possible only with a NaN
//! in it, which breaks the ordering they rely on), these stop at its end instead.

use super::{Array, KResult, KernelError};
use crate::ops::order::{Lanes, Topk, TopkReturn};

/// Below this many elements libstdc++'s introsort leaves a run to insertion sort.
const THRESHOLD: usize = 16;

/// The first `k` indices of `values` in MXNet 1.9.1's CPU order: descending, or
/// ascending with `ascend`, ties and NaN placed as libstdc++'s `std::sort` (when
/// `k·8 > n`) or `std::partial_sort` place them.
pub fn mxnet_order<T: Copy + PartialOrd>(values: &[T], k: usize, ascend: bool) -> Vec<usize> {
    let n = values.len();
    let mut s = Sorter {
        values,
        ascend,
        idx: (0..n).collect(),
    };
    let k = k.min(n);
    if k.saturating_mul(8) > n {
        s.sort(0, n);
    } else {
        s.partial_sort(0, k, n);
    }
    s.idx.truncate(k);
    s.idx
}

/// libstdc++'s sorting algorithms on a permutation of a lane's indices.
struct Sorter<'a, T> {
    values: &'a [T],
    ascend: bool,
    idx: Vec<usize>,
}

impl<T: Copy + PartialOrd> Sorter<'_, T> {
    /// The comparator: element `a` goes before element `b` (ids; an id past the lane, as
    /// `usize::MAX` from [`Sorter::id`], compares false).
    fn before(&self, a: usize, b: usize) -> bool {
        match (self.values.get(a), self.values.get(b)) {
            (Some(x), Some(y)) => {
                if self.ascend {
                    x < y
                } else {
                    x > y
                }
            }
            _ => false,
        }
    }

    /// The element at position `p`.
    fn id(&self, p: usize) -> usize {
        self.idx.get(p).copied().unwrap_or(usize::MAX)
    }

    fn set(&mut self, p: usize, id: usize) {
        if let Some(slot) = self.idx.get_mut(p) {
            *slot = id;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        if a < self.idx.len() && b < self.idx.len() {
            self.idx.swap(a, b);
        }
    }

    /// `std::sort(first, last)`.
    fn sort(&mut self, first: usize, last: usize) {
        if first < last {
            let n = last - first;
            let lg = n.ilog2() as usize;
            self.introsort_loop(first, last, lg * 2);
            self.final_insertion_sort(first, last);
        }
    }

    fn introsort_loop(&mut self, first: usize, mut last: usize, mut depth: usize) {
        while last.saturating_sub(first) > THRESHOLD {
            if depth == 0 {
                self.partial_sort(first, last, last);
                return;
            }
            depth -= 1;
            let cut = self.partition_pivot(first, last);
            self.introsort_loop(cut, last, depth);
            last = cut;
        }
    }

    fn partition_pivot(&mut self, first: usize, last: usize) -> usize {
        let mid = first + (last - first) / 2;
        self.move_median_to_first(first, first + 1, mid, last - 1);
        self.unguarded_partition(first + 1, last, first)
    }

    /// Moves the median of the elements at `a`, `b` and `c` to `result`.
    fn move_median_to_first(&mut self, result: usize, a: usize, b: usize, c: usize) {
        let (ea, eb, ec) = (self.id(a), self.id(b), self.id(c));
        let median = if self.before(ea, eb) {
            if self.before(eb, ec) {
                b
            } else if self.before(ea, ec) {
                c
            } else {
                a
            }
        } else if self.before(ea, ec) {
            a
        } else if self.before(eb, ec) {
            c
        } else {
            b
        };
        self.swap(result, median);
    }

    fn unguarded_partition(&mut self, mut first: usize, mut last: usize, pivot: usize) -> usize {
        let p = self.id(pivot);
        loop {
            while first < self.idx.len() && self.before(self.id(first), p) {
                first += 1;
            }
            let Some(l) = last.checked_sub(1) else {
                return first;
            };
            last = l;
            while self.before(p, self.id(last)) {
                let Some(l) = last.checked_sub(1) else { break };
                last = l;
            }
            if first >= last {
                return first;
            }
            self.swap(first, last);
            first += 1;
        }
    }

    fn final_insertion_sort(&mut self, first: usize, last: usize) {
        if last - first > THRESHOLD {
            self.insertion_sort(first, first + THRESHOLD);
            for i in first + THRESHOLD..last {
                self.unguarded_linear_insert(i);
            }
        } else {
            self.insertion_sort(first, last);
        }
    }

    fn insertion_sort(&mut self, first: usize, last: usize) {
        for i in first + 1..last.min(self.idx.len()) {
            let e = self.id(i);
            if self.before(e, self.id(first)) {
                self.idx.copy_within(first..i, first + 1);
                self.set(first, e);
            } else {
                self.unguarded_linear_insert(i);
            }
        }
    }

    fn unguarded_linear_insert(&mut self, mut last: usize) {
        let e = self.id(last);
        while let Some(next) = last.checked_sub(1) {
            if !self.before(e, self.id(next)) {
                break;
            }
            self.set(last, self.id(next));
            last = next;
        }
        self.set(last, e);
    }

    /// `std::partial_sort(first, middle, last)`: the smallest (by the comparator)
    /// `middle - first` elements, sorted, by a heap.
    fn partial_sort(&mut self, first: usize, middle: usize, last: usize) {
        self.make_heap(first, middle);
        for i in middle..last {
            if self.before(self.id(i), self.id(first)) {
                self.pop_heap(first, middle, i);
            }
        }
        let mut end = middle;
        while end - first > 1 {
            end -= 1;
            self.pop_heap(first, end, end);
        }
    }

    fn make_heap(&mut self, first: usize, last: usize) {
        let len = last - first;
        if len < 2 {
            return;
        }
        let mut parent = (len - 2) / 2;
        loop {
            let e = self.id(first + parent);
            self.adjust_heap(first, parent, len, e);
            if parent == 0 {
                return;
            }
            parent -= 1;
        }
    }

    fn pop_heap(&mut self, first: usize, last: usize, result: usize) {
        let e = self.id(result);
        self.set(result, self.id(first));
        self.adjust_heap(first, 0, last - first, e);
    }

    fn adjust_heap(&mut self, first: usize, mut hole: usize, len: usize, e: usize) {
        let top = hole;
        let mut second = hole;
        while second < len.saturating_sub(1) / 2 {
            second = 2 * (second + 1);
            if self.before(self.id(first + second), self.id(first + second - 1)) {
                second -= 1;
            }
            self.set(first + hole, self.id(first + second));
            hole = second;
        }
        if len.is_multiple_of(2) && second == len.saturating_sub(2) / 2 {
            second = 2 * (second + 1);
            self.set(first + hole, self.id(first + second - 1));
            hole = second - 1;
        }
        // push_heap
        let mut parent = hole.saturating_sub(1) / 2;
        while hole > top && self.before(self.id(first + parent), e) {
            self.set(first + hole, self.id(first + parent));
            hole = parent;
            parent = hole.saturating_sub(1) / 2;
        }
        self.set(first + hole, e);
    }
}

/// Where each picked element of `x` lies: for every element of the values (or indices)
/// output, in its row-major order, the flat offset in `x` of the element it holds.
pub fn picked_offsets(x: &Array, op: &Topk) -> KResult<(Lanes, Vec<usize>)> {
    let lanes = op
        .lanes(&x.shape)
        .map_err(|e| KernelError::new("topk", e))?;
    let Lanes { outer, n, inner, k } = lanes;
    let mut offsets = vec![0; outer * k * inner];
    let mut lane = Vec::with_capacity(n);
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            lane.clear();
            for j in 0..n {
                lane.push(
                    x.data
                        .get(at(j))
                        .copied()
                        .ok_or_else(|| KernelError::new("topk", "the input is short"))?,
                );
            }
            for (r, j) in mxnet_order(&lane, k, op.ascend).into_iter().enumerate() {
                if let Some(slot) = offsets.get_mut((o * k + r) * inner + i) {
                    *slot = at(j);
                }
            }
        }
    }
    Ok((lanes, offsets))
}

/// MXNet `topk` (and `sort`, `argsort`): the values, the indices along the axis (of the
/// flattened input without one) as floats, the 0/1 mask of the input's shape, or the
/// values and the indices.
pub fn topk(
    x: &Array,
    axis: Option<i64>,
    k: Option<usize>,
    ret: TopkReturn,
    ascend: bool,
) -> KResult<Vec<Array>> {
    let op = Topk {
        axis,
        k,
        ret,
        ascend,
    };
    let (lanes, offsets) = picked_offsets(x, &op)?;
    let shape = op
        .picked_shape(&x.shape, lanes.k)
        .map_err(|e| KernelError::new("topk", e))?;
    let values = || {
        Array::new(
            shape.clone(),
            offsets
                .iter()
                .map(|&o| x.data.get(o).copied().unwrap_or(f64::NAN))
                .collect(),
        )
    };
    let indices = || {
        let along = |o: usize| (o / lanes.inner) % lanes.n.max(1);
        Array::new(
            shape.clone(),
            offsets.iter().map(|&o| along(o) as f64).collect(),
        )
    };
    Ok(match ret {
        TopkReturn::Value => vec![values()?],
        TopkReturn::Indices => vec![indices()?],
        TopkReturn::Both => vec![values()?, indices()?],
        TopkReturn::Mask => {
            let mut mask = Array::zeros(x.shape.clone())?;
            for &o in &offsets {
                if let Some(m) = mask.data.get_mut(o) {
                    *m = 1.0;
                }
            }
            vec![mask]
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn arr(shape: &[usize], data: &[f64]) -> Array {
        Array::new(shape.to_vec(), data.to_vec()).unwrap()
    }

    #[test]
    fn short_lanes_keep_ties_in_order_and_nan_in_place() {
        // Checked against MXNet 1.9.1: at most 16 elements under a full sort are
        // insertion-sorted (stable); a NaN stops every element behind it.
        let x = [3.0, 1.0, 3.0, 2.0, 1.0, 3.0, f64::NAN, 2.0];
        assert_eq!(mxnet_order(&x, 5, false), vec![0, 2, 5, 3, 1]);
        assert_eq!(mxnet_order(&x, 5, true), vec![1, 4, 3, 0, 2]);
        assert_eq!(mxnet_order(&x, 8, true), vec![1, 4, 3, 0, 2, 5, 6, 7]);
    }

    #[test]
    fn long_lanes_order_ties_as_mxnets_introsort_and_heap() {
        // 36 elements of three values, checked against MXNet 1.9.1: neither order is
        // stable.
        let x: Vec<f64> = [1.0, 0.0, 2.0]
            .iter()
            .cycle()
            .take(9)
            .flat_map(|&v| [v; 4])
            .collect();
        assert_eq!(
            mxnet_order(&x, 36, true),
            vec![
                28, 16, 17, 18, 19, 7, 6, 5, 4, 29, 30, 31, 1, 27, 26, 25, 24, 14, 13, 15, 12, 0,
                2, 3, 35, 34, 33, 32, 8, 9, 10, 11, 23, 22, 21, 20
            ]
        );
        // k·8 > n: the full sort; its first 12.
        assert_eq!(
            mxnet_order(&x, 12, false),
            vec![8, 20, 21, 22, 23, 11, 10, 9, 32, 33, 34, 35]
        );
        // k·8 ≤ n: the heap.
        assert_eq!(mxnet_order(&x, 4, false).len(), 4);
    }

    #[test]
    fn outputs_along_an_inner_axis() {
        let x = arr(&[2, 3], &[0.3, 0.2, 0.4, 0.1, 0.3, 0.2]);
        // MXNet's documented examples.
        let out = topk(&x, Some(0), Some(2), TopkReturn::Value, false).unwrap();
        assert_eq!(out[0].data, vec![0.3, 0.3, 0.4, 0.1, 0.2, 0.2]);
        let out = topk(&x, None, Some(2), TopkReturn::Both, false).unwrap();
        assert_eq!(out[0].shape, vec![2]);
        assert_eq!(out[0].data, vec![0.4, 0.3]);
        assert_eq!(out[1].data, vec![2.0, 0.0]);
        let out = topk(&x, Some(-1), Some(1), TopkReturn::Mask, true).unwrap();
        assert_eq!(out[0].data, vec![0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        let out = topk(&x, Some(1), None, TopkReturn::Indices, true).unwrap();
        assert_eq!(out[0].data, vec![1.0, 0.0, 2.0, 0.0, 2.0, 1.0]);
        assert!(topk(&x, Some(1), Some(4), TopkReturn::Value, true).is_err());
    }
}
