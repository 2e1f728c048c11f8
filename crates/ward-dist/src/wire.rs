//! The messages of the parameter store and their one encoding: a fixed binary layout,
//! little-endian, each message opening with [`WIRE_VERSION`]. Decoding is a cursor over
//! the bytes gRPC delivered ([`Reader`]); every length is checked against the bytes that
//! remain and a stated limit before anything is allocated, and an error names the field
//! and the offset. There is no field that carries code: an optimizer, a function or a
//! script has no encoding here.
//!
//! gRPC itself (tonic) caps a message's size before reading it, from the shapes of the
//! keys a service holds: see `crate::transport`.

use std::marker::PhantomData;

use bytes::{Buf, BufMut};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// The layout's version, the first byte of every message.
pub const WIRE_VERSION: u8 = 2;
/// Longest string field (a job name, an address, a reason).
pub const MAX_STRING: usize = 1024;
/// Most tensor parts in one message.
pub const MAX_PARTS: usize = 1 << 16;
/// Most server addresses in a job description.
pub const MAX_SERVERS: usize = crate::identity::MAX_RANKS as usize;
/// Most checkpoint recipients in a job description.
pub const MAX_RECIPIENTS: usize = 64;
/// Most checkpoint steps a [`Kept`] lists.
pub const MAX_KEPT: usize = 4096;

/// Why bytes are not a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}.{field} at byte {at}: {problem}")]
pub struct WireError {
    pub message: &'static str,
    pub field: &'static str,
    pub at: usize,
    pub problem: Problem,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("needs {need} bytes, {left} left")]
    Truncated { need: usize, left: usize },
    #[error("{found} is more than the limit of {limit}")]
    TooMany { found: u64, limit: u64 },
    #[error("not UTF-8")]
    NotUtf8,
    #[error("version {0}; this build reads version 2")]
    Version(u8),
    #[error("{0} bytes after the message")]
    Trailing(usize),
    #[error("{0} is not a known value")]
    UnknownValue(u8),
}

/// A cursor over one message's bytes.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8], message: &'static str) -> Reader<'a> {
        Reader {
            bytes,
            at: 0,
            message,
        }
    }

    fn error(&self, field: &'static str, problem: Problem) -> WireError {
        WireError {
            message: self.message,
            field,
            at: self.at,
            problem,
        }
    }

    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let slice = self
            .at
            .checked_add(n)
            .and_then(|end| self.bytes.get(self.at..end))
            .ok_or_else(|| {
                self.error(
                    field,
                    Problem::Truncated {
                        need: n,
                        left: self.left(),
                    },
                )
            })?;
        self.at += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    pub fn digest(&mut self, field: &'static str) -> Result<[u8; 32], WireError> {
        self.array(field)
    }

    /// A count, checked against `limit` and against the bytes left at `unit` bytes an
    /// item, before the caller allocates for it.
    pub fn count(
        &mut self,
        field: &'static str,
        limit: usize,
        unit: usize,
    ) -> Result<usize, WireError> {
        let n = self.u32(field)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        if n > limit {
            return Err(self.error(
                field,
                Problem::TooMany {
                    found: n as u64,
                    limit: limit as u64,
                },
            ));
        }
        let need = n.saturating_mul(unit);
        if need > self.left() {
            return Err(self.error(
                field,
                Problem::Truncated {
                    need,
                    left: self.left(),
                },
            ));
        }
        Ok(n)
    }

    /// A string: a `u32` length (at most [`MAX_STRING`]) and UTF-8.
    pub fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let n = self.count(field, MAX_STRING, 1)?;
        let bytes = self.take(n, field)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| self.error(field, Problem::NotUtf8))
    }

    /// `u32` count and that many `f32`.
    pub fn floats(&mut self, field: &'static str, limit: usize) -> Result<Vec<f32>, WireError> {
        let n = self.count(field, limit, 4)?;
        let bytes = self.take(n * 4, field)?;
        let (words, _) = bytes.as_chunks::<4>();
        Ok(words.iter().map(|w| f32::from_le_bytes(*w)).collect())
    }

    pub fn version(&mut self) -> Result<(), WireError> {
        match self.u8("version")? {
            WIRE_VERSION => Ok(()),
            v => {
                self.at -= 1;
                Err(self.error("version", Problem::Version(v)))
            }
        }
    }

    /// The end: every byte read.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.left() {
            0 => Ok(()),
            n => Err(self.error("end", Problem::Trailing(n))),
        }
    }

    pub fn unknown(&self, field: &'static str, value: u8) -> WireError {
        self.error(field, Problem::UnknownValue(value))
    }
}

fn put_string(out: &mut impl BufMut, s: &str) {
    // Longer strings are cut (at a character boundary) rather than sent: no reader would
    // take them.
    let mut end = s.len().min(MAX_STRING);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let s = s.get(..end).unwrap_or_default();
    out.put_u32_le(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn put_floats(out: &mut impl BufMut, values: &[f32]) {
    out.put_u32_le(values.len() as u32);
    // Through a block on the stack, which the compiler turns into wide moves.
    let mut block = [0u8; 4096];
    for chunk in values.chunks(block.len() / 4) {
        let (words, _) = block.as_chunks_mut::<4>();
        for (w, v) in words.iter_mut().zip(chunk) {
            *w = v.to_le_bytes();
        }
        out.put_slice(block.get(..chunk.len() * 4).unwrap_or_default());
    }
}

/// One message: its layout, after the version byte.
pub trait Message: Sized + Send + 'static {
    const NAME: &'static str;
    fn encode(&self, out: &mut impl BufMut);
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError>;

    /// The length [`Message::encode`] writes, where it is worth knowing ahead (tensors):
    /// the encoder reserves it at once rather than doubling its buffer, copying, from
    /// 256 KiB to the megabytes of a shard. 0: not known.
    fn encoded_len(&self) -> usize {
        0
    }

    /// The whole message, version first.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![WIRE_VERSION];
        self.encode(&mut out);
        out
    }

    /// A whole message: the version, the fields, and nothing after them.
    fn from_bytes(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(bytes, Self::NAME);
        r.version()?;
        let m = Self::decode(&mut r)?;
        r.finish()?;
        Ok(m)
    }
}

/// How a job's servers apply gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MXNet's `dist_sync`: one update per key per step, once every worker's gradient is
    /// in, each worker counted once.
    Sync,
    /// MXNet's `dist_async`: each push updates at once.
    Async,
}

impl Mode {
    fn code(self) -> u8 {
        match self {
            Mode::Sync => 0,
            Mode::Async => 1,
        }
    }
}

/// Nothing: the reply of a call that only succeeds or fails.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Empty {}

impl Message for Empty {
    const NAME: &'static str = "Empty";
    fn encode(&self, _: &mut impl BufMut) {}
    fn decode(_: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Empty {})
    }
}

/// A member asks to join: the digest of its own copy of the job's spec and, for a server,
/// the address workers dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    pub spec_sha256: [u8; 32],
    pub advertise: String,
}

impl Message for JoinRequest {
    const NAME: &'static str = "JoinRequest";
    fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(&self.spec_sha256);
        put_string(out, &self.advertise);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(JoinRequest {
            spec_sha256: r.digest("spec_sha256")?,
            advertise: r.string("advertise")?,
        })
    }
}

/// What the coordinator hands every member: the job, fixed for its whole run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDescription {
    pub job: String,
    pub spec_sha256: [u8; 32],
    /// The run's seed: every random stream of every worker derives from it.
    pub seed: [u8; 32],
    pub mode: Mode,
    pub heartbeat_ms: u32,
    pub workers: u32,
    /// The servers' addresses, by rank.
    pub servers: Vec<String>,
    /// The step the job starts from (0, or a resumed checkpoint's).
    pub start_step: u64,
    /// Servers write a checkpoint of their shard after every this many steps (0: never).
    pub checkpoint_every: u64,
    /// The age recipients (public keys, `age1…`) checkpoints are encrypted to.
    pub recipients: Vec<String>,
    /// On a resumed job, the SHA-256 of each server's encrypted shard state at
    /// `start_step`, by rank, as the signed cluster checkpoint records them; empty on a
    /// job that starts fresh.
    pub shards: Vec<[u8; 32]>,
}

impl JobDescription {
    /// The heartbeat timeout (at least 100 ms, whatever the coordinator sent).
    pub fn heartbeat(&self) -> std::time::Duration {
        std::time::Duration::from_millis(u64::from(self.heartbeat_ms.max(100)))
    }
}

impl Message for JobDescription {
    const NAME: &'static str = "JobDescription";
    fn encode(&self, out: &mut impl BufMut) {
        put_string(out, &self.job);
        out.put_slice(&self.spec_sha256);
        out.put_slice(&self.seed);
        out.put_u8(self.mode.code());
        out.put_u32_le(self.heartbeat_ms);
        out.put_u32_le(self.workers);
        out.put_u32_le(self.servers.len() as u32);
        for s in &self.servers {
            put_string(out, s);
        }
        out.put_u64_le(self.start_step);
        out.put_u64_le(self.checkpoint_every);
        out.put_u32_le(self.recipients.len() as u32);
        for r in &self.recipients {
            put_string(out, r);
        }
        out.put_u32_le(self.shards.len() as u32);
        for d in &self.shards {
            out.put_slice(d);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let job = r.string("job")?;
        let spec_sha256 = r.digest("spec_sha256")?;
        let seed = r.digest("seed")?;
        let mode = match r.u8("mode")? {
            0 => Mode::Sync,
            1 => Mode::Async,
            v => return Err(r.unknown("mode", v)),
        };
        let heartbeat_ms = r.u32("heartbeat_ms")?;
        let workers = r.u32("workers")?;
        let n = r.count("servers", MAX_SERVERS, 4)?;
        let servers = (0..n)
            .map(|_| r.string("servers"))
            .collect::<Result<_, _>>()?;
        let start_step = r.u64("start_step")?;
        let checkpoint_every = r.u64("checkpoint_every")?;
        let n = r.count("recipients", MAX_RECIPIENTS, 4)?;
        let recipients = (0..n)
            .map(|_| r.string("recipients"))
            .collect::<Result<_, _>>()?;
        let n = r.count("shards", MAX_SERVERS, 32)?;
        let shards = (0..n)
            .map(|_| r.digest("shards"))
            .collect::<Result<_, _>>()?;
        Ok(JobDescription {
            job,
            spec_sha256,
            seed,
            mode,
            heartbeat_ms,
            workers,
            servers,
            start_step,
            checkpoint_every,
            recipients,
            shards,
        })
    }
}

/// A piece of one key: the whole key, or one server's part of a split one.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub key: u32,
    pub part: u32,
    pub values: Vec<f32>,
}

/// Tensor parts, with the job and step they belong to: a push (gradients), a pull's or
/// a push's reply (weights), a server's initial shard.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensors {
    pub job: String,
    pub step: u64,
    pub parts: Vec<Part>,
}

/// Most values in one part: 2^30 (4 GiB of `f32`), beyond any key a job may declare.
pub const MAX_PART_VALUES: usize = 1 << 30;

/// Encodes [`Tensors`] from borrowed values: `(key, part, values)` each.
pub fn put_tensors<'a>(
    out: &mut impl BufMut,
    job: &str,
    step: u64,
    parts: impl ExactSizeIterator<Item = (u32, u32, &'a [f32])>,
) {
    put_string(out, job);
    out.put_u64_le(step);
    out.put_u32_le(parts.len() as u32);
    for (key, part, values) in parts {
        out.put_u32_le(key);
        out.put_u32_le(part);
        put_floats(out, values);
    }
}

/// The length of [`put_tensors`]'s encoding of a job name and parts of these lengths.
fn tensors_len(job: &str, parts: impl Iterator<Item = usize>) -> usize {
    let job = 4 + job.len().min(MAX_STRING);
    job + 8 + 4 + parts.map(|n| 12 + 4 * n).sum::<usize>()
}

impl Message for Tensors {
    const NAME: &'static str = "Tensors";
    fn encoded_len(&self) -> usize {
        tensors_len(&self.job, self.parts.iter().map(|p| p.values.len()))
    }
    fn encode(&self, out: &mut impl BufMut) {
        put_tensors(
            out,
            &self.job,
            self.step,
            self.parts
                .iter()
                .map(|p| (p.key, p.part, p.values.as_slice())),
        );
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let job = r.string("job")?;
        let step = r.u64("step")?;
        // Each part takes at least 12 bytes (key, part, count).
        let n = r.count("parts", MAX_PARTS, 12)?;
        let parts = (0..n)
            .map(|_| {
                Ok(Part {
                    key: r.u32("key")?,
                    part: r.u32("part")?,
                    values: r.floats("values", MAX_PART_VALUES)?,
                })
            })
            .collect::<Result<_, WireError>>()?;
        Ok(Tensors { job, step, parts })
    }
}

/// A server's weights, as a reply: decoded as [`Tensors`]; sent either from `Tensors` or
/// from bytes encoded once per step and shared by every worker's reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Weights {
    Tensors(Tensors),
    /// A whole [`Tensors`] message, version byte first (see [`Message::to_bytes`]).
    Encoded(bytes::Bytes),
}

impl Weights {
    /// The tensors (a decoded reply is always these).
    pub fn into_tensors(self) -> Result<Tensors, WireError> {
        match self {
            Weights::Tensors(t) => Ok(t),
            Weights::Encoded(b) => Tensors::from_bytes(&b),
        }
    }
}

impl Message for Weights {
    const NAME: &'static str = "Weights";
    fn encoded_len(&self) -> usize {
        match self {
            Weights::Tensors(t) => t.encoded_len(),
            Weights::Encoded(b) => b.len().saturating_sub(1),
        }
    }
    fn encode(&self, out: &mut impl BufMut) {
        match self {
            Weights::Tensors(t) => t.encode(out),
            Weights::Encoded(b) => out.put_slice(b.get(1..).unwrap_or_default()),
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Tensors::decode(r).map(Weights::Tensors)
    }
}

/// A pull: the job and the step the caller holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub job: String,
}

impl Message for PullRequest {
    const NAME: &'static str = "PullRequest";
    fn encode(&self, out: &mut impl BufMut) {
        put_string(out, &self.job);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(PullRequest {
            job: r.string("job")?,
        })
    }
}

/// A heartbeat: the step the member is at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub step: u64,
}

impl Message for Heartbeat {
    const NAME: &'static str = "Heartbeat";
    fn encode(&self, out: &mut impl BufMut) {
        out.put_u64_le(self.step);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Heartbeat {
            step: r.u64("step")?,
        })
    }
}

/// Where the job stands, as the coordinator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    Running,
    /// Finished: every worker is done and the weights are saved.
    Finished,
    /// Stopped by a failure, which the reason names.
    Failed(String),
}

impl Message for JobState {
    const NAME: &'static str = "JobState";
    fn encode(&self, out: &mut impl BufMut) {
        match self {
            JobState::Running => out.put_u8(0),
            JobState::Finished => out.put_u8(1),
            JobState::Failed(reason) => {
                out.put_u8(2);
                put_string(out, reason);
            }
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(match r.u8("state")? {
            0 => JobState::Running,
            1 => JobState::Finished,
            2 => JobState::Failed(r.string("reason")?),
            v => return Err(r.unknown("state", v)),
        })
    }
}

/// A member reports a failure that stops the job (a worker's error, a server's refusal
/// of a step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: String,
}

impl Message for Failure {
    const NAME: &'static str = "Failure";
    fn encode(&self, out: &mut impl BufMut) {
        put_string(out, &self.reason);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(Failure {
            reason: r.string("reason")?,
        })
    }
}

/// A server has written the checkpoint of its shard after `step`: the SHA-256 of its
/// encrypted state, which the coordinator's cluster checkpoint records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSaved {
    pub job: String,
    pub step: u64,
    pub state_sha256: [u8; 32],
}

impl Message for ShardSaved {
    const NAME: &'static str = "ShardSaved";
    fn encode(&self, out: &mut impl BufMut) {
        put_string(out, &self.job);
        out.put_u64_le(self.step);
        out.put_slice(&self.state_sha256);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        Ok(ShardSaved {
            job: r.string("job")?,
            step: r.u64("step")?,
            state_sha256: r.digest("state_sha256")?,
        })
    }
}

/// The coordinator's answer to [`ShardSaved`]: the newest complete cluster checkpoint
/// and the steps of every cluster checkpoint it keeps, so that a server deletes a shard
/// only once no kept cluster checkpoint needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    /// The step of the newest complete cluster checkpoint (0: none yet).
    pub complete: u64,
    pub steps: Vec<u64>,
}

impl Message for Kept {
    const NAME: &'static str = "Kept";
    fn encode(&self, out: &mut impl BufMut) {
        out.put_u64_le(self.complete);
        out.put_u32_le(self.steps.len() as u32);
        for s in &self.steps {
            out.put_u64_le(*s);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, WireError> {
        let complete = r.u64("complete")?;
        let n = r.count("steps", MAX_KEPT, 8)?;
        let steps = (0..n).map(|_| r.u64("steps")).collect::<Result<_, _>>()?;
        Ok(Kept { complete, steps })
    }
}

/// tonic's codec for [`Message`]s: `E` sent, `D` received.
pub struct WireCodec<E, D>(PhantomData<fn() -> (E, D)>);

impl<E, D> Default for WireCodec<E, D> {
    fn default() -> Self {
        WireCodec(PhantomData)
    }
}

impl<E: Message, D: Message> Codec for WireCodec<E, D> {
    type Encode = E;
    type Decode = D;
    type Encoder = WireEncoder<E>;
    type Decoder = WireDecoder<D>;

    fn encoder(&mut self) -> Self::Encoder {
        WireEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder(PhantomData)
    }
}

pub struct WireEncoder<E>(PhantomData<fn() -> E>);

impl<E: Message> Encoder for WireEncoder<E> {
    type Item = E;
    type Error = Status;

    fn encode(&mut self, item: E, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.reserve(1 + item.encoded_len());
        dst.put_u8(WIRE_VERSION);
        item.encode(dst);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        // Tensors are megabytes: start large rather than double from 8 KiB.
        BufferSettings::new(BUFFER, BUFFER)
    }
}

pub struct WireDecoder<D>(PhantomData<fn() -> D>);

/// tonic's buffer for one message, to begin with.
const BUFFER: usize = 256 * 1024;

impl<D: Message> Decoder for WireDecoder<D> {
    type Item = D;
    type Error = Status;

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(BUFFER, BUFFER)
    }

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<D>, Status> {
        // tonic has checked the message's length against the service's limit and holds
        // all of it, usually in one piece, which the reader reads in place; otherwise one
        // contiguous copy.
        let n = src.remaining();
        let decoded = if src.chunk().len() == n {
            let decoded = D::from_bytes(src.chunk());
            src.advance(n);
            decoded
        } else {
            D::from_bytes(&src.copy_to_bytes(n))
        };
        decoded
            .map(Some)
            .map_err(|e| Status::invalid_argument(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let t = Tensors {
            job: "j".into(),
            step: 7,
            parts: vec![
                Part {
                    key: 1,
                    part: 0,
                    values: (0..3000).map(|i| i as f32 * 0.5 - 7.0).collect(),
                },
                Part {
                    key: 2,
                    part: 1,
                    values: vec![f32::MIN, -0.0, f32::INFINITY],
                },
            ],
        };
        assert_eq!(Tensors::from_bytes(&t.to_bytes()).unwrap(), t);
        // The length reserved ahead is the length written.
        assert_eq!(t.encoded_len() + 1, t.to_bytes().len());
        let encoded = Weights::Encoded(t.to_bytes().into());
        assert_eq!(encoded.encoded_len() + 1, t.to_bytes().len());
        let d = JobDescription {
            job: "j".into(),
            spec_sha256: [3; 32],
            seed: [9; 32],
            mode: Mode::Async,
            heartbeat_ms: 2000,
            workers: 2,
            servers: vec!["127.0.0.1:1".into(), "h:2".into()],
            start_step: 5,
            checkpoint_every: 10,
            recipients: vec!["age1xyz".into()],
            shards: vec![[4; 32], [5; 32]],
        };
        assert_eq!(JobDescription::from_bytes(&d.to_bytes()).unwrap(), d);
        for s in [
            JobState::Running,
            JobState::Finished,
            JobState::Failed("worker/1 died".into()),
        ] {
            assert_eq!(JobState::from_bytes(&s.to_bytes()).unwrap(), s);
        }
        let saved = ShardSaved {
            job: "j".into(),
            step: 20,
            state_sha256: [7; 32],
        };
        assert_eq!(ShardSaved::from_bytes(&saved.to_bytes()).unwrap(), saved);
        let kept = Kept {
            complete: 20,
            steps: vec![10, 20],
        };
        assert_eq!(Kept::from_bytes(&kept.to_bytes()).unwrap(), kept);
    }

    #[test]
    fn a_count_larger_than_the_bytes_left_is_refused_before_allocating() {
        // A tensor announcing 2^30 values and sending none.
        let mut bytes = vec![WIRE_VERSION];
        bytes.extend(1u32.to_le_bytes());
        bytes.push(b'j');
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(1u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend(0u32.to_le_bytes());
        bytes.extend((1u32 << 30).to_le_bytes());
        let err = Tensors::from_bytes(&bytes).unwrap_err();
        assert_eq!(err.field, "values");
        assert!(matches!(err.problem, Problem::Truncated { .. }), "{err}");
        // Too many parts for the limit.
        let mut bytes = vec![WIRE_VERSION, 0, 0, 0, 0];
        bytes.extend(0u64.to_le_bytes());
        bytes.extend(u32::MAX.to_le_bytes());
        let err = Tensors::from_bytes(&bytes).unwrap_err();
        assert!(matches!(err.problem, Problem::TooMany { .. }), "{err}");
    }

    #[test]
    fn versions_trailing_bytes_and_unknown_values_are_named() {
        let err = Empty::from_bytes(&[1]).unwrap_err();
        assert_eq!(err.problem, Problem::Version(1));
        let err = Empty::from_bytes(&[WIRE_VERSION, 0]).unwrap_err();
        assert_eq!(err.problem, Problem::Trailing(1));
        let err = JobState::from_bytes(&[WIRE_VERSION, 7]).unwrap_err();
        assert_eq!(
            (err.field, err.problem),
            ("state", Problem::UnknownValue(7))
        );
        let err = Failure::from_bytes(&[WIRE_VERSION, 2, 0, 0, 0, 0xff, 0xfe]).unwrap_err();
        assert_eq!(err.problem, Problem::NotUtf8);
        assert!(
            err.to_string().starts_with("Failure.reason at byte"),
            "{err}"
        );
    }

    #[test]
    fn the_fuzz_seeds_are_messages() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dist_wire");
        let mut seen = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            // The committed seeds; a local fuzzing run leaves others beside them.
            let path = entry.unwrap().path();
            if !path
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                continue;
            }
            let bytes = std::fs::read(path).unwrap();
            let (which, rest) = bytes.split_first().unwrap();
            let ok = match which % 10 {
                0 => Tensors::from_bytes(rest).map(|m| m.to_bytes()),
                1 => JobDescription::from_bytes(rest).map(|m| m.to_bytes()),
                2 => JoinRequest::from_bytes(rest).map(|m| m.to_bytes()),
                3 => JobState::from_bytes(rest).map(|m| m.to_bytes()),
                4 => Heartbeat::from_bytes(rest).map(|m| m.to_bytes()),
                5 => Failure::from_bytes(rest).map(|m| m.to_bytes()),
                6 => PullRequest::from_bytes(rest).map(|m| m.to_bytes()),
                7 => Empty::from_bytes(rest).map(|m| m.to_bytes()),
                8 => ShardSaved::from_bytes(rest).map(|m| m.to_bytes()),
                _ => Kept::from_bytes(rest).map(|m| m.to_bytes()),
            };
            assert_eq!(ok.unwrap(), rest);
            seen += 1;
        }
        assert_eq!(seen, 10);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Tensors::from_bytes(&bytes);
            let _ = JobDescription::from_bytes(&bytes);
            let _ = JobState::from_bytes(&bytes);
            let _ = JoinRequest::from_bytes(&bytes);
            let _ = ShardSaved::from_bytes(&bytes);
            let _ = Kept::from_bytes(&bytes);
        }
    }
}
