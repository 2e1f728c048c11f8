//! Shape operators: values moved, not computed. Reshape, flatten, concatenation, axis
//! swaps and permutations, slices, splits, stacking, padding, tiling, repeating and
//! broadcasting, and tensors filled with a constant.

use serde::{Deserialize, Serialize};

use ward_core::DType;

use super::{
    data_dtype, dim, input, positive, product, resolve_axis, same_dtype, same_shapes, OpDef, Shape,
    R,
};
use crate::limits::{MAX_RANK, MAX_REPEAT, MAX_SPLIT_OUTPUTS};
use crate::shape::MAX_VALUE_ELEMENTS;

/// One dim of a reshape's output, in terms of the input's dims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReshapeDim {
    /// This many.
    Fixed(usize),
    /// Input dim `axis`.
    Copy(usize),
    /// The product of input dims `from` up to, not including, `to`.
    Product(usize, usize),
    /// Input dim `axis` divided by `divisor`, which must divide it.
    Quotient(usize, usize),
    /// Whatever keeps the element count (at most one per reshape).
    Infer,
}

/// The same elements in a new shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reshape {
    pub dims: Vec<ReshapeDim>,
}

/// (N, …) → (N, product of the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flatten {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Concat {
    pub axis: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwapAxes {
    pub axis1: i64,
    pub axis2: i64,
}

/// A new axis of size 1 at `axis` (MXNet `expand_dims`: `-rank-1 <= axis <= rank`,
/// negatives counting from after the last axis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpandDims {
    pub axis: i64,
}

/// The listed axes, each of size 1, removed (MXNet `squeeze`, whose axes the importer
/// resolves; with none listed MXNet removes every axis of size 1, which the importer
/// lists). Removing every axis leaves shape (1), as MXNet does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Squeeze {
    pub axes: Vec<usize>,
}

/// The axes permuted: output axis `i` is input axis `perm[i]` (MXNet `transpose`, whose
/// axes the importer resolves for the input's rank).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transpose {
    pub perm: Vec<usize>,
}

/// MXNet 1.9.1's `slice`: for each of the leading axes listed, a range with an optional
/// begin and end and a step (default 1, never 0); the remaining axes are kept whole.
/// Negative begins and ends count from the axis's end, and both are then clamped to the
/// axis as MXNet's `GetIndexRange` clamps them (an end past the axis stops at it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slice {
    pub begin: Vec<Option<i64>>,
    pub end: Vec<Option<i64>>,
    pub step: Vec<i64>,
}

/// MXNet's `slice_axis`: `begin..end` of one axis, step 1, negatives counting from the
/// end, and (unlike `slice`) no clamping: the range must lie in the axis and not be
/// empty. `end: None` is the axis's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SliceAxis {
    pub axis: i64,
    pub begin: i64,
    pub end: Option<i64>,
}

/// The elements of one axis a slice keeps: `len` of them from `start`, `step` apart
/// (a negative step walks backwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strided {
    pub start: usize,
    pub step: i64,
    pub len: usize,
}

impl Strided {
    /// The whole of an axis of size `len`.
    pub fn whole(len: usize) -> Strided {
        Strided {
            start: 0,
            step: 1,
            len,
        }
    }

    /// The input index of output index `i` (`i < len`).
    pub fn index(&self, i: usize) -> usize {
        // In range by construction: `start + (len - 1) * step` lies in the axis.
        (self.start as i64 + i as i64 * self.step) as usize
    }
}

/// `outputs` equal slices along `axis`; `squeeze` drops the (then size-1) axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    pub axis: i64,
    pub outputs: usize,
    pub squeeze: bool,
}

/// The inputs stacked along a new axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stack {
    pub axis: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    Constant,
    Edge,
    Reflect,
}

/// `pads` holds (before, after) for each axis; only spatial axes (after the first two)
/// may be padded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pad {
    pub mode: PadMode,
    pub pads: Vec<usize>,
    #[serde(with = "super::float")]
    pub value: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FillDim {
    Fixed(usize),
    /// Dim `axis` of input `input` of the node.
    Like {
        input: usize,
        axis: usize,
    },
}

impl FillDim {
    /// Every dim of the first input's shape, for an input of `rank` dims.
    pub fn first_input(rank: usize) -> Vec<FillDim> {
        (0..rank)
            .map(|axis| FillDim::Like { input: 0, axis })
            .collect()
    }
}

/// A constant tensor of `value`; dims may be copied from the inputs' shapes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fill {
    #[serde(with = "super::float")]
    pub value: f64,
    pub shape: Vec<FillDim>,
}

/// MXNet `_arange` and `_contrib_arange_like`: element `i` (in row-major order) is
/// `start + ⌊i / repeat⌋ · step`, computed in float32 as MXNet computes it; the dims are
/// fixed or copied from the inputs' shapes, as [`Fill`]'s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arange {
    #[serde(with = "super::float")]
    pub start: f64,
    #[serde(with = "super::float")]
    pub step: f64,
    pub repeat: usize,
    pub shape: Vec<FillDim>,
}

impl Arange {
    /// Element `i`, as MXNet's `range_fwd` computes it: `start` and `step` in float32.
    pub fn value(&self, i: usize) -> f32 {
        let k = i / self.repeat.max(1);
        self.start as f32 + k as f32 * self.step as f32
    }
}

/// The dims of a [`Fill`] or [`Arange`] for the inputs' shapes `ins`.
fn fill_dims(shape: &[FillDim], ins: &[Option<&[usize]>]) -> R<Shape> {
    let mut out = Vec::with_capacity(shape.len());
    for d in shape {
        out.push(match *d {
            FillDim::Fixed(n) => n,
            FillDim::Like { input: i, axis } => {
                let s = input(ins, i, "the shape reference")?;
                dim(s, axis, "the shape reference")?
            }
        });
    }
    Ok(out)
}

/// Ones of the input's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnesLike {}

/// MXNet `shape_array`: the input's dims as a 1-D int64 array. A plan is built for
/// concrete input shapes, so the backends give it as a constant; nothing of the data is
/// read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShapeArray {}

/// MXNet `size_array`: the input's element count as a 1-element int64 array.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SizeArray {}

/// MXNet `tile`: the input repeated `reps[i]` times along each axis. Reps shorter than
/// the input's rank are padded with leading 1s, and an input of lower rank than the reps
/// gets leading axes of 1 (MXNet 1.9.1's `TileOpShape`); no reps is the identity. Each
/// rep is 1 to [`MAX_REPEAT`] (MXNet's 0 makes an empty tensor, which ward never does).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tile {
    pub reps: Vec<usize>,
}

/// MXNet `reverse` (alias `flip`): the order of the elements along each listed axis
/// reversed. MXNet reverses once per listing, so an axis listed twice is left as it was;
/// the importer keeps the axes listed an odd number of times, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reverse {
    pub axes: Vec<usize>,
}

/// MXNet `repeat`: each element `repeats` times in a row along `axis` (negative counts
/// from the end); with no axis, along the flattened input, giving a 1-D output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    pub repeats: usize,
    pub axis: Option<i64>,
}

/// One dim of a broadcast's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BroadcastDim {
    /// The input's own dim.
    Keep,
    /// This many: the input's dim must be 1 or this.
    Fixed(usize),
    /// Dim `axis` of the node's second input, whose values are never read (MXNet
    /// `broadcast_like`'s rhs): the input's dim must be 1 or that.
    Like(usize),
}

/// MXNet `broadcast_axis`, `broadcast_to` and `broadcast_like`: the input's axes of size 1
/// repeated to a target of the same rank, each target dim given by [`BroadcastDim`]
/// (the importer resolves MXNet's three spellings into it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastTo {
    pub dims: Vec<BroadcastDim>,
}

impl Transpose {
    /// The permutation reversing `rank` axes (MXNet's default, `axes=()`).
    pub fn reversed(rank: usize) -> Transpose {
        Transpose {
            perm: (0..rank).rev().collect(),
        }
    }

    /// The permutation undoing this one.
    pub fn inverse(&self) -> Vec<usize> {
        let mut inv = vec![0; self.perm.len()];
        for (i, &p) in self.perm.iter().enumerate() {
            if let Some(slot) = inv.get_mut(p) {
                *slot = i;
            }
        }
        inv
    }
}

impl Slice {
    /// Each axis's range for an input of shape `x`, following MXNet 1.9.1's
    /// `GetIndexRange` and `SetSliceOpOutputDimSize` (checked against MXNet over every
    /// begin, end and step from -9 to 9 on an axis of 7). A range MXNet would make empty
    /// is refused: no operator of a model ward runs yields an empty tensor.
    pub fn ranges(&self, x: &[usize]) -> R<Vec<Strided>> {
        if self.begin.len() > x.len() {
            return Err(format!(
                "slice lists {} axes for an input of rank {} ({x:?})",
                self.begin.len(),
                x.len()
            ));
        }
        let mut out: Vec<Strided> = x.iter().map(|&d| Strided::whole(d)).collect();
        for (axis, slot) in out.iter_mut().enumerate().take(self.begin.len()) {
            let begin = self.begin.get(axis).copied().flatten();
            let end = self.end.get(axis).copied().flatten();
            let step = self.step.get(axis).copied().unwrap_or(1);
            *slot = clamped_range(axis, slot.len, begin, end, step)?;
        }
        Ok(out)
    }
}

/// One axis of MXNet's `slice`.
fn clamped_range(
    axis: usize,
    len: usize,
    begin: Option<i64>,
    end: Option<i64>,
    step: i64,
) -> R<Strided> {
    if step == 0 {
        return Err(format!("slice step of axis {axis} is 0"));
    }
    let n = i64::try_from(len).map_err(|_| "axis too long".to_string())?;
    let mut b = begin.unwrap_or(if step < 0 { n - 1 } else { 0 });
    let mut e = end.unwrap_or(if step < 0 { -1 } else { n });
    if b < 0 {
        b = b.saturating_add(n);
    }
    if e < 0 && end.is_some() {
        e = e.saturating_add(n);
    }
    if b < 0 && step > 0 {
        b = 0;
    }
    if b > n - 1 && step < 0 {
        b = n - 1;
    }
    let e = e.clamp(-1, n);
    let count = if b < 0 || b > n - 1 || e == b {
        0
    } else if step > 0 {
        if e > b {
            (e - b - 1) / step + 1
        } else {
            0
        }
    } else if e < b {
        (b - e - 1) / -step + 1
    } else {
        0
    };
    if count == 0 {
        return Err(format!(
            "slice of axis {axis} (size {len}) from {begin:?} to {end:?} by {step} is empty"
        ));
    }
    Ok(Strided {
        start: b as usize,
        step,
        len: count as usize,
    })
}

impl SliceAxis {
    /// Each axis's range for an input of shape `x`, with MXNet's checks.
    pub fn ranges(&self, x: &[usize]) -> R<Vec<Strided>> {
        let a = resolve_axis(self.axis, x.len())?;
        let len = dim(x, a, "data")?;
        let n = i64::try_from(len).map_err(|_| "axis too long".to_string())?;
        let b = if self.begin < 0 {
            self.begin.saturating_add(n)
        } else {
            self.begin
        };
        let e = match self.end {
            None => n,
            Some(e) if e < 0 => e.saturating_add(n),
            Some(e) => e,
        };
        if b < 0 || e > n || b >= e {
            return Err(format!(
                "slice_axis of axis {a} (size {len}) from {} to {:?} is out of range or empty",
                self.begin, self.end
            ));
        }
        let mut out: Vec<Strided> = x.iter().map(|&d| Strided::whole(d)).collect();
        if let Some(slot) = out.get_mut(a) {
            *slot = Strided {
                start: b as usize,
                step: 1,
                len: (e - b) as usize,
            };
        }
        Ok(out)
    }
}

/// The output shape of a slice given its ranges.
pub fn sliced_shape(ranges: &[Strided]) -> Shape {
    ranges.iter().map(|r| r.len).collect()
}

impl Reshape {
    /// The output shape for an input of shape `x`.
    pub fn output_shape(&self, x: &[usize]) -> R<Shape> {
        let total = product(x)?;
        let mut out = Vec::with_capacity(self.dims.len());
        let mut inferred = None;
        for d in &self.dims {
            out.push(match *d {
                ReshapeDim::Fixed(n) => n,
                ReshapeDim::Copy(axis) => dim(x, axis, "input")?,
                ReshapeDim::Product(from, to) => product(
                    x.get(from..to)
                        .ok_or_else(|| format!("input {x:?} has no dims {from}..{to}"))?,
                )?,
                ReshapeDim::Quotient(axis, divisor) => {
                    let d = dim(x, axis, "input")?;
                    if divisor == 0 || d % divisor != 0 {
                        return Err(format!(
                            "dim {axis} of size {d} does not divide by {divisor}"
                        ));
                    }
                    d / divisor
                }
                ReshapeDim::Infer => {
                    inferred = Some(out.len());
                    1
                }
            });
        }
        if let Some(at) = inferred {
            let known = product(&out)?;
            if known == 0 || total % known != 0 {
                return Err(format!(
                    "cannot infer a dim: {total} elements do not divide by {known}"
                ));
            }
            if let Some(slot) = out.get_mut(at) {
                *slot = total / known;
            }
        }
        if product(&out)? != total {
            return Err(format!(
                "reshape of {x:?} to {out:?} changes the element count"
            ));
        }
        Ok(out)
    }
}

impl OpDef for Reshape {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.dims.len() > MAX_RANK {
            return Err("reshape has too many dims".into());
        }
        let infers = self
            .dims
            .iter()
            .filter(|d| **d == ReshapeDim::Infer)
            .count();
        if infers > 1 {
            return Err("reshape infers more than one dim".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![self.output_shape(input(ins, 0, "data")?)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Flatten {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let (&first, rest) = x.split_first().ok_or("cannot flatten a scalar")?;
        Ok(vec![vec![first, product(rest)?]])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Concat {
    fn arity(&self) -> (usize, usize) {
        (1, usize::MAX)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let a = resolve_axis(self.axis, x.len())?;
        let mut total = 0usize;
        for i in 0..ins.len() {
            let s = input(ins, i, "data")?;
            let matches = s.len() == x.len()
                && s.iter()
                    .zip(x.iter())
                    .enumerate()
                    .all(|(d, (p, q))| d == a || p == q);
            if !matches {
                return Err(format!(
                    "input {i} has shape {s:?}, which does not match {x:?} outside axis {a}"
                ));
            }
            total = total
                .checked_add(dim(s, a, "input")?)
                .ok_or("concatenated size overflows")?;
        }
        let mut out = x.to_vec();
        if let Some(slot) = out.get_mut(a) {
            *slot = total;
        }
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        same_dtype(ins, 1)
    }
}

impl OpDef for SwapAxes {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let (a, b) = (
            resolve_axis(self.axis1, x.len())?,
            resolve_axis(self.axis2, x.len())?,
        );
        let mut out = x.to_vec();
        out.swap(a, b);
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for ExpandDims {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if x.len() >= MAX_RANK {
            return Err(format!(
                "expand_dims of rank {} passes the rank limit",
                x.len()
            ));
        }
        let at = resolve_axis(self.axis, x.len() + 1)?;
        let mut out = x.to_vec();
        out.insert(at, 1);
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Squeeze {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.axes.len() > MAX_RANK {
            return Err("squeeze lists too many axes".into());
        }
        for (i, a) in self.axes.iter().enumerate() {
            if self.axes.get(..i).is_some_and(|before| before.contains(a)) {
                return Err(format!("squeeze names axis {a} twice"));
            }
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        for &a in &self.axes {
            let d = dim(x, a, "data")?;
            if d != 1 {
                return Err(format!(
                    "cannot squeeze axis {a} of {x:?}: its size is {d}, not 1"
                ));
            }
        }
        let mut out: Shape = x
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.axes.contains(i))
            .map(|(_, &d)| d)
            .collect();
        if out.is_empty() {
            out.push(1);
        }
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Transpose {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.perm.len() > MAX_RANK {
            return Err("transpose has too many axes".into());
        }
        let mut seen = [false; MAX_RANK];
        for &p in &self.perm {
            match seen.get_mut(p) {
                Some(s) if !*s && p < self.perm.len() => *s = true,
                _ => {
                    return Err(format!(
                        "axes {:?} are not a permutation of 0..{}",
                        self.perm,
                        self.perm.len()
                    ))
                }
            }
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if x.len() != self.perm.len() {
            return Err(format!(
                "axes {:?} do not permute an input of rank {} ({x:?})",
                self.perm,
                x.len()
            ));
        }
        let out = self
            .perm
            .iter()
            .map(|&p| dim(x, p, "data"))
            .collect::<R<Shape>>()?;
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Slice {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.begin.len() > MAX_RANK {
            return Err("slice lists too many axes".into());
        }
        if self.end.len() != self.begin.len() {
            return Err(format!(
                "begin has {} axes and end {}",
                self.begin.len(),
                self.end.len()
            ));
        }
        if !self.step.is_empty() && self.step.len() != self.begin.len() {
            return Err(format!(
                "step has {} axes where begin has {}",
                self.step.len(),
                self.begin.len()
            ));
        }
        if let Some(axis) = self.step.iter().position(|&s| s == 0) {
            return Err(format!("slice step of axis {axis} is 0"));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![sliced_shape(&self.ranges(input(ins, 0, "data")?)?)])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for SliceAxis {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![sliced_shape(&self.ranges(input(ins, 0, "data")?)?)])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Split {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn num_outputs(&self) -> usize {
        self.outputs
    }

    fn validate(&self) -> R<()> {
        if self.outputs > MAX_SPLIT_OUTPUTS {
            return Err(format!(
                "{} outputs exceed the limit of {MAX_SPLIT_OUTPUTS}",
                self.outputs
            ));
        }
        positive("outputs", &[self.outputs])
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let a = resolve_axis(self.axis, x.len())?;
        let n = dim(x, a, "data")?;
        if n % self.outputs != 0 {
            return Err(format!(
                "axis {a} of size {n} does not split into {} equal parts",
                self.outputs
            ));
        }
        let mut part = x.to_vec();
        let size = n / self.outputs;
        if let Some(slot) = part.get_mut(a) {
            *slot = size;
        }
        if self.squeeze {
            if size != 1 {
                return Err(format!(
                    "squeeze_axis needs parts of size 1 along axis {a}, got {size}"
                ));
            }
            part.remove(a);
        }
        Ok(vec![part; self.outputs])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Stack {
    fn arity(&self) -> (usize, usize) {
        (1, usize::MAX)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let s = same_shapes(ins)?;
        let a = resolve_axis(self.axis, s.len() + 1)?;
        let mut out = s;
        out.insert(a, ins.len());
        Ok(vec![out])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        same_dtype(ins, 1)
    }
}

impl OpDef for Pad {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if !self.pads.len().is_multiple_of(2) || self.pads.len() > 2 * MAX_RANK {
            return Err(format!(
                "pads {:?} must hold a (before, after) pair per axis",
                self.pads
            ));
        }
        if self.value.is_nan() {
            return Err("the pad value is NaN".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if x.len() != 4 && x.len() != 5 {
            return Err(format!("pad needs a 4-D or 5-D input, got {x:?}"));
        }
        if self.pads.len() != 2 * x.len() {
            return Err(format!(
                "pads has {} values, expected {} for rank {}",
                self.pads.len(),
                2 * x.len(),
                x.len()
            ));
        }
        if self.pads.iter().take(4).any(|p| *p != 0) {
            return Err("the batch and channel axes cannot be padded".into());
        }
        let mut out = Vec::with_capacity(x.len());
        for (i, (d, pair)) in x.iter().zip(self.pads.chunks_exact(2)).enumerate() {
            let (b, a) = match pair {
                [b, a] => (*b, *a),
                _ => return Err("pads must come in pairs".into()),
            };
            if self.mode == PadMode::Reflect && (b >= *d || a >= *d) {
                return Err(format!(
                    "reflect pads ({b}, {a}) must be smaller than dim {i} of size {d}"
                ));
            }
            out.push(
                d.checked_add(b)
                    .and_then(|v| v.checked_add(a))
                    .ok_or("padded size overflows")?,
            );
        }
        Ok(vec![out])
    }
}

impl OpDef for Fill {
    fn arity(&self) -> (usize, usize) {
        (0, usize::MAX)
    }

    fn validate(&self) -> R<()> {
        if self.shape.len() > MAX_RANK {
            return Err("fill has too many dims".into());
        }
        if self.value.is_nan() {
            return Err("the fill value is NaN".into());
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![fill_dims(&self.shape, ins)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        // zeros_like has its data's type; a fill of a fixed shape is float32.
        Ok(vec![ins.first().copied().unwrap_or(DType::F32)])
    }
}

impl OpDef for Arange {
    fn arity(&self) -> (usize, usize) {
        (0, usize::MAX)
    }

    fn validate(&self) -> R<()> {
        if self.shape.len() > MAX_RANK {
            return Err("arange has too many dims".into());
        }
        if !self.start.is_finite() || !self.step.is_finite() {
            return Err(format!(
                "start {} and step {} must be finite",
                self.start, self.step
            ));
        }
        if self.repeat == 0 || self.repeat > MAX_REPEAT {
            return Err(format!("repeat {} must be 1 to {MAX_REPEAT}", self.repeat));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![fill_dims(&self.shape, ins)?])
    }
}

impl OpDef for ShapeArray {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![vec![input(ins, 0, "data")?.len()]])
    }

    fn infer_dtypes(&self, _ins: &[DType]) -> R<Vec<DType>> {
        Ok(vec![DType::I64])
    }
}

impl OpDef for SizeArray {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        input(ins, 0, "data")?;
        Ok(vec![vec![1]])
    }

    fn infer_dtypes(&self, _ins: &[DType]) -> R<Vec<DType>> {
        Ok(vec![DType::I64])
    }
}

impl OpDef for OnesLike {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![input(ins, 0, "data")?.to_vec()])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

/// `x` with leading 1s to rank `rank` (`x` is at most that long).
fn padded(x: &[usize], rank: usize) -> Shape {
    let mut out = vec![1; rank.saturating_sub(x.len())];
    out.extend_from_slice(x);
    out
}

/// Refuses an output of more elements than a value may hold, naming what made it.
fn within_cap(out: &[usize], what: impl FnOnce() -> String) -> R<()> {
    match ward_core::tensor::element_count(out) {
        Some(n) if n <= MAX_VALUE_ELEMENTS => Ok(()),
        _ => Err(format!(
            "{} gives shape {out:?}, more than {MAX_VALUE_ELEMENTS} elements",
            what()
        )),
    }
}

/// Refuses a count outside 1 to [`MAX_REPEAT`].
fn count(what: &str, v: usize) -> R<()> {
    if v == 0 || v > MAX_REPEAT {
        return Err(format!(
            "{what} {v} is outside 1 to {MAX_REPEAT} (0 would make an empty tensor)"
        ));
    }
    Ok(())
}

impl Tile {
    /// The input's shape padded to the output's rank, and each axis's rep.
    pub fn padded(&self, x: &[usize]) -> (Shape, Shape) {
        let rank = x.len().max(self.reps.len());
        (padded(x, rank), padded(&self.reps, rank))
    }

    /// The output shape for an input of shape `x` (checked against the element cap).
    pub fn output_shape(&self, x: &[usize]) -> R<Shape> {
        if self.reps.is_empty() {
            return Ok(x.to_vec());
        }
        let (xp, rp) = self.padded(x);
        if xp.len() > MAX_RANK {
            return Err(format!(
                "tile of {x:?} by {:?} passes the rank limit",
                self.reps
            ));
        }
        let out = xp
            .iter()
            .zip(&rp)
            .map(|(&d, &r)| d.checked_mul(r))
            .collect::<Option<Shape>>()
            .ok_or_else(|| format!("reps {:?} on {x:?} overflow", self.reps))?;
        within_cap(&out, || format!("reps {:?} on {x:?}", self.reps))?;
        Ok(out)
    }
}

impl Repeat {
    /// The output shape for an input of shape `x` (checked against the element cap).
    pub fn output_shape(&self, x: &[usize]) -> R<Shape> {
        let what = || format!("repeats {} on {x:?}", self.repeats);
        let out = match self.axis {
            None => vec![product(x)?
                .checked_mul(self.repeats)
                .ok_or_else(|| format!("{} overflows", what()))?],
            Some(axis) => {
                let a = resolve_axis(axis, x.len())?;
                let mut out = x.to_vec();
                if let Some(slot) = out.get_mut(a) {
                    *slot = slot
                        .checked_mul(self.repeats)
                        .ok_or_else(|| format!("{} overflows", what()))?;
                }
                out
            }
        };
        within_cap(&out, what)?;
        Ok(out)
    }
}

impl BroadcastTo {
    /// Whether a dim comes from the second input (which the node then has).
    pub fn reads_like(&self) -> bool {
        self.dims.iter().any(|d| matches!(d, BroadcastDim::Like(_)))
    }

    /// The output shape for an input of shape `x`; `like` is the second input's shape,
    /// when the node has one.
    pub fn output_shape(&self, x: &[usize], like: Option<&[usize]>) -> R<Shape> {
        if x.len() != self.dims.len() {
            return Err(format!(
                "a broadcast to {} dims cannot take an input of rank {} ({x:?})",
                self.dims.len(),
                x.len()
            ));
        }
        let mut out = Vec::with_capacity(x.len());
        for (i, (d, &xd)) in self.dims.iter().zip(x).enumerate() {
            let target = match *d {
                BroadcastDim::Keep => xd,
                BroadcastDim::Fixed(n) => n,
                BroadcastDim::Like(axis) => {
                    let like = like.ok_or("the shape reference (input 1) is missing")?;
                    dim(like, axis, "the shape reference")?
                }
            };
            if target == 0 {
                return Err(format!("axis {i} would broadcast to 0 (an empty tensor)"));
            }
            if xd != target && xd != 1 {
                return Err(format!(
                    "axis {i} of {x:?} has size {xd}, which broadcasts only from 1, not to {target}"
                ));
            }
            out.push(target);
        }
        within_cap(&out, || format!("broadcasting {x:?}"))?;
        Ok(out)
    }
}

impl OpDef for Tile {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.reps.len() > MAX_RANK {
            return Err(format!(
                "reps has {} values, past the rank limit",
                self.reps.len()
            ));
        }
        for &r in &self.reps {
            count("rep", r)?;
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![self.output_shape(input(ins, 0, "data")?)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Reverse {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        if self.axes.len() > MAX_RANK || self.axes.windows(2).any(|w| matches!(w, [a, b] if a >= b))
        {
            return Err(format!(
                "reverse's axes {:?} are not distinct and sorted",
                self.axes
            ));
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        if let Some(&axis) = self.axes.iter().find(|&&a| a >= x.len()) {
            return Err(format!(
                "reverse's axis {axis} is not an axis of the {}-d data",
                x.len()
            ));
        }
        Ok(vec![x.to_vec()])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for Repeat {
    fn arity(&self) -> (usize, usize) {
        (1, 1)
    }

    fn validate(&self) -> R<()> {
        count("repeats", self.repeats)
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        Ok(vec![self.output_shape(input(ins, 0, "data")?)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

impl OpDef for BroadcastTo {
    fn arity(&self) -> (usize, usize) {
        if self.reads_like() {
            (2, 2)
        } else {
            (1, 1)
        }
    }

    fn validate(&self) -> R<()> {
        if self.dims.len() > MAX_RANK {
            return Err("a broadcast has too many dims".into());
        }
        for d in &self.dims {
            match *d {
                BroadcastDim::Keep => {}
                BroadcastDim::Fixed(n) => count("broadcast size", n)?,
                BroadcastDim::Like(axis) if axis >= MAX_RANK => {
                    return Err(format!("like axis {axis} passes the rank limit"))
                }
                BroadcastDim::Like(_) => {}
            }
        }
        Ok(())
    }

    fn infer(&self, ins: &[Option<&[usize]>]) -> R<Vec<Shape>> {
        let x = input(ins, 0, "data")?;
        let like = if self.reads_like() {
            Some(input(ins, 1, "the shape reference")?)
        } else {
            None
        };
        Ok(vec![self.output_shape(x, like)?])
    }

    fn infer_dtypes(&self, ins: &[DType]) -> R<Vec<DType>> {
        data_dtype(ins, self.num_outputs())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use ReshapeDim::*;

    fn reshape(dims: Vec<ReshapeDim>, x: &[usize]) -> R<Shape> {
        Reshape { dims }.output_shape(x)
    }

    #[test]
    fn neutral_reshape_dims() {
        assert_eq!(
            reshape(vec![Copy(0), Infer], &[2, 3, 4]).unwrap(),
            vec![2, 12]
        );
        assert_eq!(
            reshape(vec![Product(0, 2), Copy(2)], &[2, 3, 4]).unwrap(),
            vec![6, 4]
        );
        assert_eq!(
            reshape(vec![Quotient(0, 2), Fixed(2), Copy(1)], &[4, 3]).unwrap(),
            vec![2, 2, 3]
        );
        assert!(reshape(vec![Fixed(5)], &[2, 3]).is_err());
        assert!(reshape(vec![Quotient(0, 4), Infer], &[6, 2]).is_err());
        assert!(reshape(vec![Copy(3)], &[6]).is_err());
        let two = Reshape {
            dims: vec![Infer, Infer],
        };
        assert!(two.validate().is_err());
    }

    #[test]
    fn tile_repeat_and_broadcast_shapes_and_limits() {
        let tile = |reps: Vec<usize>, x: &[usize]| Tile { reps }.output_shape(x);
        // MXNet pads the shorter of reps and shape with leading 1s.
        assert_eq!(tile(vec![2, 3], &[4, 5, 6]).unwrap(), vec![4, 10, 18]);
        assert_eq!(tile(vec![2, 1, 3], &[5]).unwrap(), vec![2, 1, 15]);
        assert_eq!(tile(vec![], &[5]).unwrap(), vec![5]);
        let e = tile(vec![1 << 16, 1 << 16], &[1, 1]).unwrap_err();
        assert!(e.contains("reps") && e.contains("elements"), "{e}");
        assert!(tile(vec![usize::MAX, 2], &[2, 1]).is_err());
        assert!(Tile { reps: vec![0] }.validate().is_err());
        assert!(Tile {
            reps: vec![1 << 40]
        }
        .validate()
        .is_err());
        assert!(Tile { reps: vec![1; 33] }.validate().is_err());

        let rep = |repeats, axis| Repeat { repeats, axis };
        assert_eq!(rep(2, Some(-1)).output_shape(&[2, 3]).unwrap(), vec![2, 6]);
        assert_eq!(rep(3, None).output_shape(&[2, 3]).unwrap(), vec![18]);
        assert!(rep(2, Some(2)).output_shape(&[2, 3]).is_err());
        assert!(rep(usize::MAX, None).output_shape(&[2, 3]).is_err());
        assert!(rep(0, None).validate().is_err());

        use BroadcastDim::{Fixed, Keep, Like};
        let b = BroadcastTo {
            dims: vec![Keep, Fixed(4), Like(0)],
        };
        assert_eq!(b.arity(), (2, 2));
        assert_eq!(
            b.output_shape(&[2, 1, 1], Some(&[7])).unwrap(),
            vec![2, 4, 7]
        );
        assert_eq!(
            b.output_shape(&[2, 4, 7], Some(&[7])).unwrap(),
            vec![2, 4, 7]
        );
        assert!(b.output_shape(&[2, 3, 1], Some(&[7])).is_err());
        assert!(b.output_shape(&[2, 1, 1], None).is_err());
        assert!(b.output_shape(&[2, 1], Some(&[7])).is_err());
        assert!(b.output_shape(&[2, 1, 1], Some(&[])).is_err());
        let fixed = BroadcastTo {
            dims: vec![Fixed(1 << 20), Fixed(1 << 20)],
        };
        assert_eq!(fixed.arity(), (1, 1));
        assert!(fixed.output_shape(&[1, 1], None).is_err());
        assert!(BroadcastTo {
            dims: vec![Fixed(0)]
        }
        .validate()
        .is_err());
        // In graph.json.
        let op: crate::ops::Op = b.into();
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(
            json,
            r#"{"type":"broadcast_to","dims":["keep",{"fixed":4},{"like":0}]}"#
        );
        assert_eq!(serde_json::from_str::<crate::ops::Op>(&json).unwrap(), op);
    }
}
