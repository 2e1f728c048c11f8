//! Watching each principal's queries of each model for the shape of a model-extraction
//! attack: PRADA (Juuti, Szyller, Marchal and Asokan, "PRADA: Protecting against DNN Model
//! Stealing Attacks", EuroS&P 2019).
//!
//! Queries a client draws from a natural distribution lie at distances from each other
//! that are close to normally distributed; the synthetic queries that extraction attacks
//! craft (small steps from a few seeds, points pushed towards a decision boundary) are
//! not. For each query the monitor takes its distance to the nearest earlier query that
//! the model put in the same class; once enough are in, a Shapiro–Wilk W of those
//! distances below the threshold flags the stream: one `extraction.suspected` audit
//! event, and with `action = "deny"` the principal's further queries of that model get 403.
//!
//! What it does not catch (the paper says as much): an attacker who queries with natural
//! samples (Knockoff Nets), or with points drawn uniformly from the input box, as the
//! equation-solving attack of Tramèr et al. does. Budgets, rate limits and the output
//! policy are the controls for those.
//!
//! Queries are compared in a sketch of [`SKETCH_DIMS`] dimensions (the inputs themselves
//! when they have no more): each input element is added, with a sign, to one coordinate
//! chosen by a hash keyed from the OS CSPRNG at start, which keeps distances in
//! expectation (a count sketch) and costs one pass over the input (0.13 ms for
//! squeezenet's 150 528 elements, docs/BENCHMARKS.md). The memory of a stream
//! is bounded ([`ExtractionConfig::max_remembered`] sketches and [`MAX_DISTANCES`]
//! distances), and there is one stream per principal of the tokens file and model.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use ward_core::{DType, Tensor};

/// Coordinates of a query's sketch.
pub const SKETCH_DIMS: usize = 64;
/// Most distances a stream keeps for the test (the newest); also the largest sample the
/// Shapiro–Wilk approximation is meant for.
pub const MAX_DISTANCES: usize = 5000;

/// A query as the monitor compares it.
pub type Sketch = [f32; SKETCH_DIMS];

/// What a flagged stream leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractionAction {
    /// No monitoring.
    Off,
    /// An audit event when a stream is flagged; queries go on being answered.
    Audit,
    /// The audit event, then 403 for that principal's queries of that model until the
    /// server restarts.
    Deny,
}

/// `[extraction]` in the server's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtractionConfig {
    pub action: ExtractionAction,
    /// Distances a stream needs before it is tested.
    pub min_queries: usize,
    /// A Shapiro–Wilk W below this flags the stream (the paper's δ).
    pub threshold: f64,
    /// Most query sketches a stream remembers.
    pub max_remembered: usize,
}

impl Default for ExtractionConfig {
    fn default() -> Self {
        ExtractionConfig {
            action: ExtractionAction::Audit,
            min_queries: 100,
            threshold: 0.90,
            max_remembered: 2048,
        }
    }
}

impl ExtractionConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err("threshold must be between 0 and 1".into());
        }
        if !(20..=MAX_DISTANCES).contains(&self.min_queries) {
            return Err(format!("min_queries must be 20 to {MAX_DISTANCES}"));
        }
        if !(1..=1 << 16).contains(&self.max_remembered) {
            return Err("max_remembered must be 1 to 65536".into());
        }
        Ok(())
    }
}

/// A flagged stream: what the audit event says.
#[derive(Debug, Clone, PartialEq)]
pub struct Suspicion {
    pub w: f64,
    pub distances: usize,
    pub queries: u64,
}

/// The queries of one principal to one model.
#[derive(Debug, Default)]
struct Stream {
    classes: HashMap<usize, ClassSet>,
    remembered: usize,
    distances: VecDeque<f64>,
    new_since_test: usize,
    queries: u64,
    flagged: Option<Suspicion>,
}

/// PRADA's growing set of one class: the queries far enough from every earlier one.
#[derive(Debug, Default)]
struct ClassSet {
    members: Vec<Sketch>,
    /// Running mean and squared deviations (Welford) of the distances that added members.
    added: usize,
    mean: f64,
    m2: f64,
    threshold: f64,
}

impl Stream {
    /// Takes one query; returns the suspicion the first time the stream is flagged.
    fn observe(
        &mut self,
        query: &Sketch,
        class: usize,
        config: &ExtractionConfig,
    ) -> Option<Suspicion> {
        // A row with a NaN or an infinity would poison every distance it enters.
        if self.flagged.is_some() || !query.iter().all(|v| v.is_finite()) {
            return None;
        }
        self.queries += 1;
        let set = self.classes.entry(class).or_default();
        let Some(distance) = set
            .members
            .iter()
            .map(|m| squared_distance(m, query))
            .min_by(f32::total_cmp)
            .map(|d2| f64::from(d2).sqrt())
        else {
            if self.remembered < config.max_remembered {
                set.members.push(*query);
                self.remembered += 1;
            }
            return None;
        };
        // A repeated query (a retry, a health probe) tells the client nothing new.
        if distance == 0.0 {
            return None;
        }
        if distance > set.threshold && self.remembered < config.max_remembered {
            set.members.push(*query);
            self.remembered += 1;
            set.added += 1;
            let delta = distance - set.mean;
            set.mean += delta / set.added as f64;
            set.m2 += delta * (distance - set.mean);
            let sd = (set.m2 / set.added as f64).sqrt();
            set.threshold = set.threshold.max(set.mean - sd);
        }
        if self.distances.len() == MAX_DISTANCES {
            self.distances.pop_front();
        }
        self.distances.push_back(distance);
        self.new_since_test += 1;
        let n = self.distances.len();
        // Testing costs a sort of the distances: at most once per 2 % new ones.
        if n < config.min_queries || self.new_since_test < (n / 50).max(1) {
            return None;
        }
        self.new_since_test = 0;
        let sample: Vec<f64> = self.distances.iter().copied().collect();
        let w = shapiro_wilk(&sample)?;
        (w < config.threshold).then(|| {
            let suspicion = Suspicion {
                w,
                distances: n,
                queries: self.queries,
            };
            self.flagged = Some(suspicion.clone());
            suspicion
        })
    }
}

/// In f32, over 16 lanes summed at the end, so that it vectorises (a sum in order would
/// not): the distances only need to be close, and only the nearest one is taken.
fn squared_distance(a: &Sketch, b: &Sketch) -> f32 {
    let mut lanes = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for ((lane, x), y) in lanes.iter_mut().zip(x).zip(y) {
            *lane += (x - y) * (x - y);
        }
    }
    lanes.iter().sum()
}

/// (principal, model)
type StreamKey = (String, String);

/// The monitor of every stream on the server.
pub struct ExtractionMonitor {
    config: ExtractionConfig,
    /// Odd multipliers of the sketch's hashes (coordinate, sign), from the key.
    multipliers: [u64; 2],
    streams: Mutex<HashMap<StreamKey, Arc<Mutex<Stream>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while a stream is locked; a poisoned one is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// splitmix64's finaliser: 64 well-mixed bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl ExtractionMonitor {
    /// A monitor whose sketch is keyed from the OS CSPRNG, so that a client cannot choose
    /// queries whose sketches collide.
    pub fn new(config: ExtractionConfig) -> Result<ExtractionMonitor, getrandom::Error> {
        let mut key = [0u8; 8];
        getrandom::fill(&mut key)?;
        Ok(ExtractionMonitor::with_key(config, u64::from_le_bytes(key)))
    }

    fn with_key(config: ExtractionConfig, key: u64) -> ExtractionMonitor {
        ExtractionMonitor {
            config,
            multipliers: [mix(key) | 1, mix(key ^ 0x5851_f42d_4c95_7f2d) | 1],
            streams: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.config.action != ExtractionAction::Off
    }

    fn stream(&self, principal: &str, model: &str) -> Option<Arc<Mutex<Stream>>> {
        lock(&self.streams)
            .get(&(principal.to_string(), model.to_string()))
            .cloned()
    }

    /// Whether `principal`'s queries of `model` are refused.
    pub fn denies(&self, principal: &str, model: &str) -> bool {
        self.config.action == ExtractionAction::Deny
            && self
                .stream(principal, model)
                .is_some_and(|s| lock(&s).flagged.is_some())
    }

    /// How many queries of `model` by `principal` the monitor remembers.
    pub fn remembered(&self, principal: &str, model: &str) -> usize {
        self.stream(principal, model)
            .map_or(0, |s| lock(&s).remembered)
    }

    /// The sketch of each row of `input` (its first axis is the batch), in order, or
    /// nothing when it is not a batch of numbers (a scalar, an empty batch).
    pub fn sketch_rows(&self, input: &Tensor) -> Vec<Sketch> {
        let rows = input.shape().first().copied().unwrap_or(0);
        let elements = input.len();
        if rows == 0 || elements == 0 || !elements.is_multiple_of(rows) {
            return Vec::new();
        }
        let width = elements / rows;
        let sketch_of = |row: &mut dyn Iterator<Item = f32>| {
            let mut sketch = [0f32; SKETCH_DIMS];
            if width <= SKETCH_DIMS {
                // The row itself: its distances exactly.
                for (at, v) in sketch.iter_mut().zip(row) {
                    *at = v;
                }
            } else {
                // Multiply-shift hashing keyed by two random odd multipliers picks each
                // column's coordinate and sign: two multiplications an element, no table.
                let [a, b] = self.multipliers;
                for (column, v) in (1u64..).zip(row) {
                    let at = (a.wrapping_mul(column) >> 58) as usize;
                    if let Some(slot) = sketch.get_mut(at) {
                        *slot += if b.wrapping_mul(column) >> 63 == 1 {
                            -v
                        } else {
                            v
                        };
                    }
                }
            }
            sketch
        };
        if input.dtype() == DType::F32 {
            input
                .bytes()
                .chunks_exact(4 * width)
                .map(|row| {
                    sketch_of(
                        &mut row
                            .as_chunks::<4>()
                            .0
                            .iter()
                            .map(|b| f32::from_le_bytes(*b)),
                    )
                })
                .collect()
        } else {
            input
                .to_f32_vec()
                .chunks_exact(width)
                .map(|row| sketch_of(&mut row.iter().copied()))
                .collect()
        }
    }

    /// Records queries of `model` by `principal` with the classes the model gave them;
    /// returns the suspicion when this flags the stream.
    pub fn observe(
        &self,
        principal: &str,
        model: &str,
        queries: &[Sketch],
        classes: &[usize],
    ) -> Option<Suspicion> {
        if !self.enabled() || queries.is_empty() {
            return None;
        }
        let stream = lock(&self.streams)
            .entry((principal.to_string(), model.to_string()))
            .or_default()
            .clone();
        let mut stream = lock(&stream);
        let mut flagged = None;
        for (i, query) in queries.iter().enumerate() {
            let class = classes.get(i).copied().unwrap_or(0);
            flagged = flagged.or(stream.observe(query, class, &self.config));
        }
        flagged
    }
}

/// The class the model gave each row: the largest value along the last axis of its first
/// output (all class 0 when that is not a batch of scores).
pub fn predicted_classes(output: &Tensor) -> Vec<usize> {
    let shape = output.shape();
    let rows = shape.first().copied().unwrap_or(0);
    if rows == 0 || shape.len() < 2 || !output.len().is_multiple_of(rows) {
        return vec![0; rows];
    }
    let values = output.to_f32_vec();
    values
        .chunks_exact(output.len() / rows)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map_or(0, |(i, _)| i)
        })
        .collect()
}

/// The inverse of the standard normal distribution function (Acklam's rational
/// approximation, relative error under 1.2e-9), for `p` in (0, 1).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    const LOW: f64 = 0.02425;
    if p < LOW {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - LOW {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// The Shapiro–Wilk W of `x` by Royston's approximation of the coefficients (AS R94, as
/// scipy computes it), for 6 to [`MAX_DISTANCES`] values; None for fewer, or when they
/// are all equal.
#[allow(
    clippy::indexing_slicing,
    reason = "indices below n/2 of n >= 6 sorted values, as AS R94 writes them"
)]
pub fn shapiro_wilk(x: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 6 {
        return None;
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mean = sorted.iter().sum::<f64>() / n as f64;
    let squares: f64 = sorted.iter().map(|v| (v - mean).powi(2)).sum();
    if squares <= 0.0 || !squares.is_finite() {
        return None;
    }
    // m: expected normal order statistics of the lower half (negative), largest |m| first.
    let half = n / 2;
    let m: Vec<f64> = (1..=half)
        .map(|i| normal_quantile((i as f64 - 0.375) / (n as f64 + 0.25)))
        .collect();
    let sum_m2 = 2.0 * m.iter().map(|v| v * v).sum::<f64>();
    let u = 1.0 / (n as f64).sqrt();
    let poly = |c: [f64; 5]| u * (c[0] + u * (c[1] + u * (c[2] + u * (c[3] + u * c[4]))));
    let a1 = poly([0.221157, -0.147981, -2.071190, 4.434685, -2.706056]) - m[0] / sum_m2.sqrt();
    let a2 = poly([0.042981, -0.293762, -1.752461, 5.682633, -3.582633]) - m[1] / sum_m2.sqrt();
    let scale = ((sum_m2 - 2.0 * m[0] * m[0] - 2.0 * m[1] * m[1])
        / (1.0 - 2.0 * a1 * a1 - 2.0 * a2 * a2))
        .sqrt();
    let weight = |i: usize| match i {
        0 => a1,
        1 => a2,
        _ => -m[i] / scale,
    };
    let numerator: f64 = (0..half)
        .map(|i| weight(i) * (sorted[n - 1 - i] - sorted[i]))
        .sum();
    Some((numerator * numerator / squares).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_quantiles() {
        for (p, z) in [
            (0.5, 0.0),
            (0.975, 1.959_963_984_540_054),
            (0.9, 1.281_551_565_544_600_4),
            (0.01, -2.326_347_874_040_840_8),
            (1e-6, -4.753_424_308_822_899),
        ] {
            let got = normal_quantile(p);
            assert!(
                (got - z).abs() <= 1e-8 * z.abs().max(1.0),
                "{p}: {got} vs {z}"
            );
        }
    }

    /// The vectors of tools/extraction/shapiro_reference.py, with the W scipy 1.10.1
    /// gives each (scipy's routine works in single precision: agreement to 1e-5).
    #[test]
    fn shapiro_wilk_agrees_with_scipy() {
        let n50: Vec<f64> = (0..50)
            .map(|i| normal_quantile((i as f64 + 0.5) / 50.0))
            .collect();
        let ramp: Vec<f64> = (0..100).map(f64::from).collect();
        let exponential: Vec<f64> = (0..200)
            .map(|i| -(1.0 - (i as f64 + 0.5) / 200.0).ln())
            .collect();
        let clusters: Vec<f64> = (0..60)
            .map(|i| {
                if i < 30 {
                    0.01 * i as f64
                } else {
                    10.0 + 0.01 * (i - 30) as f64
                }
            })
            .collect();
        let squares: Vec<f64> = (0..1000u64)
            .map(|i| (((i * 7919) % 1009) as f64).powi(2))
            .collect();
        let twelve = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 5.0, 8.0];
        for (name, x, want) in [
            ("normal quantiles", n50, 0.999_203_681_9),
            ("0..100", ramp, 0.954_725_325_1),
            ("exponential quantiles", exponential, 0.823_752_284_0),
            ("two clusters", clusters, 0.652_341_723_4),
            ("squares mod 1009", squares, 0.895_525_634_3),
            ("n=12", twelve.to_vec(), 0.946_548_163_9),
        ] {
            let w = shapiro_wilk(&x).unwrap();
            assert!((w - want).abs() < 1e-5, "{name}: {w} vs scipy {want}");
        }
        assert_eq!(shapiro_wilk(&[1.0; 30]), None);
        assert_eq!(shapiro_wilk(&[1.0, 2.0, 3.0]), None);
    }

    /// A deterministic stream of standard normal numbers (Box–Muller over splitmix64).
    struct Gaussian(u64);
    impl Gaussian {
        fn uniform(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            ((mix(self.0) >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        }
        fn next(&mut self) -> f64 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }
    }

    fn config() -> ExtractionConfig {
        ExtractionConfig::default()
    }

    fn monitor() -> ExtractionMonitor {
        ExtractionMonitor::with_key(config(), 7)
    }

    fn query(values: &[f32]) -> Vec<Sketch> {
        monitor().sketch_rows(&Tensor::from_f32(vec![1, values.len()], values).unwrap())
    }

    /// Natural queries: points of a 5-cluster Gaussian mixture in 20 dimensions, each
    /// classified by its cluster, as a client with real data would send them.
    #[test]
    fn natural_queries_are_not_flagged() {
        let mut g = Gaussian(1);
        let centres: Vec<Vec<f64>> = (0..5)
            .map(|_| (0..20).map(|_| 3.0 * g.next()).collect())
            .collect();
        let m = monitor();
        for i in 0..1500 {
            let c = i % 5;
            let x: Vec<f32> = centres[c].iter().map(|v| (v + g.next()) as f32).collect();
            let flagged = m.observe("alice", "mlp", &query(&x), &[c]);
            assert_eq!(flagged, None, "flagged after {i} natural queries");
        }
    }

    /// A Jacobian-augmentation style attacker (Papernot et al.): ten seeds, then each new
    /// query a small signed step from an earlier one. Returns when and how the stream was
    /// flagged, if it was within 2 000 queries.
    fn synthetic_stream(m: &ExtractionMonitor) -> Option<(usize, Suspicion)> {
        let mut g = Gaussian(2);
        let mut known: Vec<Vec<f64>> = (0..10)
            .map(|_| (0..20).map(|_| 3.0 * g.next()).collect())
            .collect();
        for i in 0..2000 {
            let base = known[i % known.len()].clone();
            let x: Vec<f64> = base.iter().map(|v| v + 0.1 * g.next().signum()).collect();
            let xs: Vec<f32> = x.iter().map(|&v| v as f32).collect();
            if let Some(s) = m.observe("mallory", "mlp", &query(&xs), &[i % 3]) {
                return Some((i, s));
            }
            known.push(x);
        }
        None
    }

    #[test]
    fn synthetic_steps_from_few_seeds_are_flagged() {
        let m = monitor();
        let (at, suspicion) = synthetic_stream(&m).expect("the synthetic stream was not flagged");
        assert!(suspicion.w < 0.90 && at < 500, "{at}: {suspicion:?}");
        assert!(!m.denies("mallory", "mlp"), "audit mode never denies");
        let deny = ExtractionMonitor::with_key(
            ExtractionConfig {
                action: ExtractionAction::Deny,
                ..config()
            },
            7,
        );
        assert!(synthetic_stream(&deny).is_some());
        assert!(deny.denies("mallory", "mlp"));
        // Other principals and models are separate streams.
        assert!(!deny.denies("mallory", "other") && !deny.denies("alice", "mlp"));
    }

    /// The bundled data set of the extraction test (tests/fixtures/extraction): its 450
    /// rows, classified by the true softmax-regression model, are natural queries and are
    /// not flagged. The equation-solving attack's uniform queries of the feature box are
    /// not flagged either: the limit the module's documentation states.
    #[test]
    fn the_bundled_data_and_uniform_queries_are_not_flagged() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/extraction");
        let npy = |name: &str| {
            ward_core::npy::read_npy(&std::fs::read(dir.join("softmax").join(name)).unwrap())
                .unwrap()
                .to_f32_vec()
        };
        let (weight, bias) = (npy("true-weight.npy"), npy("true-bias.npy"));
        let classify = |x: &[f32]| {
            (0..5)
                .map(|k| {
                    let dot: f32 = weight[20 * k..20 * k + 20]
                        .iter()
                        .zip(x)
                        .map(|(w, v)| w * v)
                        .sum();
                    dot + bias[k]
                })
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap()
                .0
        };
        let csv = std::fs::read_to_string(dir.join("gmm5.csv")).unwrap();
        let rows: Vec<Vec<f32>> = csv
            .lines()
            .skip(1)
            .map(|l| l.split(',').skip(2).map(|v| v.parse().unwrap()).collect())
            .collect();
        assert_eq!(rows.len(), 450);
        let m = monitor();
        for (i, x) in rows.iter().enumerate() {
            assert_eq!(
                m.observe("analyst", "softmax", &query(x), &[classify(x)]),
                None,
                "row {i}"
            );
        }
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("softmax/meta.json")).unwrap()).unwrap();
        let bound = |k: &str| -> Vec<f64> {
            meta[k]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect()
        };
        let (low, high) = (bound("feature_min"), bound("feature_max"));
        let mut g = Gaussian(4);
        for i in 0..1000 {
            let x: Vec<f32> = low
                .iter()
                .zip(&high)
                .map(|(l, h)| (l + (h - l) * g.uniform()) as f32)
                .collect();
            assert_eq!(
                m.observe("tramer", "softmax", &query(&x), &[classify(&x)]),
                None,
                "query {i}"
            );
        }
    }

    #[test]
    fn repeated_queries_are_not_evidence() {
        let m = monitor();
        let x = query(&[1.0, 2.0, 3.0]);
        for _ in 0..1000 {
            assert_eq!(m.observe("p", "m", &x, &[0]), None);
        }
        let stream = lock(&m.streams)[&("p".to_string(), "m".to_string())].clone();
        assert!(lock(&stream).distances.is_empty());
    }

    #[test]
    fn sketches_keep_small_inputs_and_project_large_ones() {
        let m = monitor();
        let small =
            m.sketch_rows(&Tensor::from_f32(vec![2, 3], &[1., 2., 3., 4., 5., 6.]).unwrap());
        assert_eq!(small.len(), 2);
        assert_eq!(&small[1][..4], &[4., 5., 6., 0.]);
        // A count sketch keeps the squared norm in expectation; for one big input, close.
        let mut g = Gaussian(3);
        let wide: Vec<f32> = (0..150_528).map(|_| g.next() as f32).collect();
        let sketch = m.sketch_rows(&Tensor::from_f32(vec![1, 150_528], &wide).unwrap());
        let norm2: f64 = sketch[0].iter().map(|v| f64::from(*v).powi(2)).sum();
        let want: f64 = wide.iter().map(|v| f64::from(*v).powi(2)).sum();
        assert!((norm2 / want - 1.0).abs() < 0.5, "{norm2} vs {want}");
        // Rows keep their places (each pairs with its predicted class), and a non-finite
        // row is left out of the stream rather than poisoning the distances.
        let nan = m.sketch_rows(&Tensor::from_f32(vec![2, 2], &[f32::NAN, 1., 2., 3.]).unwrap());
        assert_eq!(nan.len(), 2);
        assert_eq!(&nan[1][..2], &[2., 3.]);
        m.observe("p", "nan", &nan, &[0, 0]);
        let stream = m.stream("p", "nan").unwrap();
        let stream = lock(&stream);
        assert_eq!((stream.queries, stream.remembered), (1, 1));
        assert!(stream.distances.is_empty());
        assert!(m
            .sketch_rows(&Tensor::from_f32(vec![0, 2], &[]).unwrap())
            .is_empty());
    }

    #[test]
    fn classes_are_each_rows_largest_score() {
        let scores =
            Tensor::from_f32(vec![3, 3], &[0.1, 0.7, 0.2, 0.5, 0.3, 0.2, 0., 0., 1.]).unwrap();
        assert_eq!(predicted_classes(&scores), vec![1, 0, 2]);
        let flat = Tensor::from_f32(vec![4], &[1., 2., 3., 4.]).unwrap();
        assert_eq!(predicted_classes(&flat), vec![0; 4]);
    }

    #[test]
    fn configuration_is_checked() {
        assert!(config().validate().is_ok());
        for bad in [
            ExtractionConfig {
                threshold: 1.0,
                ..config()
            },
            ExtractionConfig {
                min_queries: 5,
                ..config()
            },
            ExtractionConfig {
                max_remembered: 0,
                ..config()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
