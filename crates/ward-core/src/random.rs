//! The run's random stream: every random decision of a training run (initialising new
//! parameters, shuffling, augmentation, dropout masks) is drawn from ChaCha20 keyed by one
//! 256-bit seed.
//!
//! MXNet's `mx.random` starts from a fixed seed, so two "random" runs draw the same
//! numbers and anyone who knows the code knows the stream. Ward takes the seed from the
//! operating system's CSPRNG unless the user gives one (`--seed`), and prints and records
//! it, so a run can be repeated exactly when that is wanted and is unpredictable otherwise.
//!
//! Each use draws from its own stream ([`Purpose`] plus an index such as the epoch or the
//! record number), so one use never shifts another: adding a dropout layer does not change
//! the data order, and a record's augmentation does not depend on which worker thread
//! decoded it first.

use std::fmt;

pub use chacha20::ChaCha20Rng;
/// The generator traits [`ChaCha20Rng`] implements, re-exported so every ward crate draws
/// through the same version.
pub use rand_core;
use rand_core::SeedableRng;

/// What a stream is drawn for. The value is part of the stream id, so it never changes
/// once released: a recorded seed must give the same run in a later ward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Purpose {
    /// Initial values of parameters the model does not provide.
    Init = 1,
    /// The order of the training records in an epoch.
    Shuffle = 2,
    /// Random crops, mirrors and other augmentation of one record.
    Augment = 3,
    /// Dropout masks.
    Dropout = 4,
}

/// Bits of the 64-bit ChaCha stream id left for the caller's index; the top byte is the
/// purpose.
pub const INDEX_BITS: u32 = 56;

/// The largest index [`RunSeed::stream`] accepts.
pub const MAX_STREAM_INDEX: u64 = (1 << INDEX_BITS) - 1;

/// A seed could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the operating system's random source failed: {0}")]
    Os(String),
    #[error(
        "seed {0:?} is neither a decimal number below 2^64 nor 64 hexadecimal digits (256 bits)"
    )]
    Malformed(String),
    #[error("stream index {index} for {purpose:?} is above the largest, {MAX_STREAM_INDEX}")]
    IndexTooLarge { purpose: Purpose, index: u64 },
}

/// The 256-bit key of a run's random streams.
#[derive(Clone, PartialEq, Eq)]
pub struct RunSeed([u8; 32]);

impl RunSeed {
    /// A fresh seed from the operating system's CSPRNG: the default for every run.
    pub fn from_os() -> Result<RunSeed, SeedError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| SeedError::Os(e.to_string()))?;
        Ok(RunSeed(bytes))
    }

    /// The seed a user gives as a number (`--seed 42`): the number's little-endian bytes,
    /// the rest zero.
    pub fn from_u64(seed: u64) -> RunSeed {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        RunSeed(bytes)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> RunSeed {
        RunSeed(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a seed as printed by [`fmt::Display`] (64 hexadecimal digits) or as a decimal
    /// number.
    pub fn parse(text: &str) -> Result<RunSeed, SeedError> {
        let text = text.trim();
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut bytes = [0u8; 32];
            for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
                let pair =
                    std::str::from_utf8(pair).map_err(|_| SeedError::Malformed(text.to_owned()))?;
                *byte = u8::from_str_radix(pair, 16)
                    .map_err(|_| SeedError::Malformed(text.to_owned()))?;
            }
            return Ok(RunSeed(bytes));
        }
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(number) = text.parse::<u64>() {
                return Ok(RunSeed::from_u64(number));
            }
        }
        Err(SeedError::Malformed(text.to_owned()))
    }

    /// The stream for one purpose and index (an epoch, a record number, a layer): ChaCha20
    /// keyed by the seed, with the purpose in the top byte of the 64-bit stream id and the
    /// index below it. Distinct (purpose, index) pairs give independent streams.
    pub fn stream(&self, purpose: Purpose, index: u64) -> Result<ChaCha20Rng, SeedError> {
        if index > MAX_STREAM_INDEX {
            return Err(SeedError::IndexTooLarge { purpose, index });
        }
        let mut rng = ChaCha20Rng::from_seed(self.0);
        rng.set_stream(((purpose as u64) << INDEX_BITS) | index);
        Ok(rng)
    }
}

impl fmt::Display for RunSeed {
    /// 64 hexadecimal digits: what `ward train` prints and records, and what `--seed`
    /// takes back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for RunSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunSeed({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::Rng;

    fn draw(rng: &mut ChaCha20Rng) -> [u32; 8] {
        std::array::from_fn(|_| rng.next_u32())
    }

    #[test]
    fn same_seed_same_stream_and_streams_differ() {
        let seed = RunSeed::from_u64(42);
        let a = draw(&mut seed.stream(Purpose::Shuffle, 3).unwrap());
        let b = draw(&mut RunSeed::from_u64(42).stream(Purpose::Shuffle, 3).unwrap());
        assert_eq!(a, b);
        assert_ne!(a, draw(&mut seed.stream(Purpose::Shuffle, 4).unwrap()));
        assert_ne!(a, draw(&mut seed.stream(Purpose::Dropout, 3).unwrap()));
        assert_ne!(
            a,
            draw(&mut RunSeed::from_u64(43).stream(Purpose::Shuffle, 3).unwrap())
        );
    }

    #[test]
    fn os_seeds_differ() {
        assert_ne!(RunSeed::from_os().unwrap(), RunSeed::from_os().unwrap());
    }

    #[test]
    fn printed_seed_reads_back() {
        let seed = RunSeed::from_os().unwrap();
        let text = seed.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(RunSeed::parse(&text).unwrap(), seed);
        assert_eq!(RunSeed::parse("42").unwrap(), RunSeed::from_u64(42));
        for bad in [
            "",
            "-1",
            "0x12",
            "18446744073709551616",
            &"g".repeat(64),
            &"a".repeat(63),
        ] {
            assert!(
                matches!(RunSeed::parse(bad), Err(SeedError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn index_above_the_limit_is_refused() {
        let seed = RunSeed::from_u64(1);
        assert!(seed.stream(Purpose::Init, MAX_STREAM_INDEX).is_ok());
        assert!(matches!(
            seed.stream(Purpose::Init, MAX_STREAM_INDEX + 1),
            Err(SeedError::IndexTooLarge { .. })
        ));
    }
}
