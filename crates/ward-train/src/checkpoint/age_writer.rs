//! Writing an age v1 file (<https://age-encryption.org/v1>) fast: the payload's chunks
//! sealed a batch at a time across the thread pool, while a second thread hashes the
//! sealed batches (the checkpoint's signature needs the file's SHA-256) and writes them
//! to their destination, so that encrypting, hashing and writing overlap.
//!
//! Why not `age::Encryptor`: its writer seals one 64 KiB chunk at a time, on one thread,
//! with RustCrypto's ChaCha20-Poly1305 (79 ms for a ResNet-18 checkpoint's 89 MiB here,
//! near MXNet's whole plaintext save), and the hash and the write are then further passes
//! over the file. Here each chunk is sealed with ring's ChaCha20-Poly1305 (BoringSSL's
//! assembly: 35 ms for the same bytes on one core), the chunks of a batch in parallel.
//!
//! Only the payload's framing is written here; everything that makes a header is age's
//! own: the recipients wrap the file key (`age::Recipient::wrap_file_key`), age-core
//! serialises the stanzas and derives the keys (`hkdf`). Reading stays with the age crate
//! ([`super::seal::Unsealing::open`]), so every test that opens a checkpoint checks this
//! writer against the reference implementation, and the stock `age` tool decrypts it.

use std::collections::HashSet;
use std::io::{self, Write};
use std::sync::mpsc;

use age::secrecy::zeroize::Zeroize;
use age::secrecy::ExposeSecret;
use age_core::format::{FileKey, Stanza};
use age_core::primitives::hkdf;
use base64ct::{Base64Unpadded, Encoding};
use rayon::prelude::*;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use sha2::{Digest, Sha256};

use super::CheckpointError;

/// The plaintext of one payload chunk (age's 64 KiB; the last may be shorter).
const CHUNK: usize = 64 * 1024;
/// The Poly1305 tag each sealed chunk ends with.
const TAG: usize = 16;
/// A closed chunk in the file: its plaintext, sealed in place, then its tag.
const SEALED_CHUNK: usize = CHUNK + TAG;
/// Chunks sealed together: 4 MiB, enough work for every thread, and small enough that the
/// plaintext waiting to be sealed never grows past it.
const BATCH_CHUNKS: usize = 64;
const BATCH: usize = BATCH_CHUNKS * SEALED_CHUNK;
/// Sealed batches waiting for the sink: the writer runs at most this far ahead.
const QUEUED_BATCHES: usize = 2;

const MAGIC: &[u8] = b"age-encryption.org/v1\n";
const HEADER_KEY_LABEL: &[u8] = b"header";
const PAYLOAD_KEY_LABEL: &[u8] = b"payload";

/// An age file written to a sink: the sink back, and the file's size and SHA-256.
pub struct Sealed<W> {
    pub sink: W,
    pub len: u64,
    pub sha256: [u8; 32],
}

/// Writes the age file, to `recipients`, of what `write` writes into `sink`. The
/// plaintext is written straight into a batch's memory and sealed there in place, so at
/// most one batch of it (4 MiB) is ever in memory in clear; sealed batches are hashed and
/// written to `sink` on a thread of their own while the next ones are made.
pub fn seal_to<W: Write + Send>(
    recipients: &[&dyn age::Recipient],
    sink: W,
    write: impl FnOnce(&mut dyn Write) -> Result<(), CheckpointError>,
) -> Result<Sealed<W>, CheckpointError> {
    let file_key = FileKey::try_init_with_mut(|k| getrandom::fill(k)).map_err(random_failed)?;
    let header = header(recipients, &file_key)?;
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).map_err(random_failed)?;
    let mut payload_key = hkdf(&nonce, PAYLOAD_KEY_LABEL, file_key.expose_secret());
    let key = UnboundKey::new(&CHACHA20_POLY1305, &payload_key).map(LessSafeKey::new);
    payload_key.zeroize();
    let key = key.map_err(|_| encrypt_failed("the payload key"))?;
    drop(file_key);

    let (to_sink, batches) = mpsc::sync_channel::<Vec<u8>>(QUEUED_BATCHES);
    let (give_back, spare) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        let sink_thread = scope.spawn(move || drain(sink, &batches, &give_back));
        let mut start = Vec::new();
        start.extend_from_slice(&header);
        start.extend_from_slice(&nonce);
        let mut payload = Payload {
            block: new_block()?,
            counter: 0,
            key,
            to_sink,
            spare,
        };
        let made = match payload.send(start).and_then(|()| write(&mut payload)) {
            Ok(()) => payload.finish(),
            Err(e) => {
                // Dropping the payload ends the sink's queue, so the sink thread ends.
                drop(payload);
                Err(e)
            }
        };
        // The sink's own error (a full disk) explains a failed send better than the send.
        let drained = sink_thread
            .join()
            .map_err(|_| encrypt_failed("the file (its writer thread panicked)"))?;
        let (sink, len, sha256) = drained.map_err(CheckpointError::WriteState)?;
        made?;
        Ok(Sealed { sink, len, sha256 })
    })
}

/// The sink thread: hashes and writes each sealed batch in order, handing its memory
/// back for the next batch.
fn drain<W: Write>(
    mut sink: W,
    batches: &mpsc::Receiver<Vec<u8>>,
    give_back: &mpsc::Sender<Vec<u8>>,
) -> io::Result<(W, u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    for batch in batches {
        hasher.update(&batch);
        sink.write_all(&batch)?;
        len += batch.len() as u64;
        // The writer may be gone (it failed); the memory is then simply freed.
        let _ = give_back.send(batch);
    }
    sink.flush()?;
    Ok((sink, len, hasher.finalize().into()))
}

/// The header: age's magic, each recipient's stanzas, and the MAC over them.
fn header(
    recipients: &[&dyn age::Recipient],
    file_key: &FileKey,
) -> Result<Vec<u8>, CheckpointError> {
    let mut stanzas: Vec<Stanza> = Vec::new();
    let mut labels: Option<HashSet<String>> = None;
    for recipient in recipients {
        let (wrapped, theirs) = recipient
            .wrap_file_key(file_key)
            .map_err(|e| CheckpointError::Encrypt(e.to_string()))?;
        // As age::Encryptor: recipients that label themselves (a passphrase does) must
        // all carry the same labels, so a passphrase is never mixed with other keys.
        match &labels {
            Some(ours) if *ours != theirs => {
                return Err(CheckpointError::Encrypt(
                    "these recipients cannot share one file (a passphrase must be alone)".into(),
                ))
            }
            _ => labels = Some(theirs),
        }
        stanzas.extend(wrapped);
    }
    if stanzas.is_empty() {
        return Err(CheckpointError::NoRecipients);
    }
    let mut h = MAGIC.to_vec();
    for s in &stanzas {
        h = cookie_factory::gen_simple(
            age_core::format::write::age_stanza(&s.tag, &s.args, &s.body),
            h,
        )
        .map_err(|e| CheckpointError::Encrypt(format!("a recipient stanza: {e:?}")))?;
    }
    h.extend_from_slice(b"---");
    let mut mac_key = hkdf(&[], HEADER_KEY_LABEL, file_key.expose_secret());
    let mac = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &mac_key), &h);
    mac_key.zeroize();
    h.push(b' ');
    h.extend_from_slice(Base64Unpadded::encode_string(mac.as_ref()).as_bytes());
    h.push(b'\n');
    Ok(h)
}

/// The payload being written. `block` holds the batch being filled: closed chunks (each
/// `SEALED_CHUNK` long, with room for its tag), then the open chunk's plaintext (at most
/// `CHUNK`, so shorter than a closed chunk), which is the last chunk of the file if
/// nothing more is written.
struct Payload {
    block: Vec<u8>,
    /// The STREAM counter of the block's first chunk.
    counter: u64,
    key: LessSafeKey,
    to_sink: mpsc::SyncSender<Vec<u8>>,
    /// Blocks the sink has written, to be filled again (their pages are already mapped).
    spare: mpsc::Receiver<Vec<u8>>,
}

impl Write for Payload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if self.open_len() == CHUNK {
                // More follows, so the full open chunk is not the last.
                self.close_chunk()
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
            let room = CHUNK - self.open_len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.block.extend_from_slice(now);
            rest = later;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Payload {
    /// The open chunk's plaintext bytes: what follows the closed chunks.
    fn open_len(&self) -> usize {
        self.block.len() % SEALED_CHUNK
    }

    fn close_chunk(&mut self) -> Result<(), CheckpointError> {
        self.block.extend_from_slice(&[0; TAG]);
        if self.block.len() == BATCH {
            self.seal_block(false)?;
            let next = match self.spare.try_recv() {
                Ok(mut spare) => {
                    spare.clear();
                    spare
                }
                Err(_) => new_block()?,
            };
            let full = std::mem::replace(&mut self.block, next);
            self.send(full)?;
        }
        Ok(())
    }

    /// Seals the block's chunks in place, in parallel; `last`: its final chunk is the
    /// file's last.
    fn seal_block(&mut self, last: bool) -> Result<(), CheckpointError> {
        let count = self.block.len().div_ceil(SEALED_CHUNK);
        let (key, first) = (&self.key, self.counter);
        self.block
            .par_chunks_mut(SEALED_CHUNK)
            .enumerate()
            .try_for_each(|(i, chunk)| {
                seal_chunk(key, first + i as u64, last && i + 1 == count, chunk)
            })?;
        self.counter += count as u64;
        Ok(())
    }

    fn send(&mut self, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        self.to_sink
            .send(bytes)
            .map_err(|_| encrypt_failed("the file (its writer stopped)"))
    }

    /// Seals what is left, the open chunk as the last (empty only if the whole payload
    /// is), and sends it; the sink then ends.
    fn finish(mut self) -> Result<(), CheckpointError> {
        self.block.extend_from_slice(&[0; TAG]);
        self.seal_block(true)?;
        let block = std::mem::take(&mut self.block);
        self.send(block)
    }
}

/// An empty batch, its memory reserved fallibly.
fn new_block() -> Result<Vec<u8>, CheckpointError> {
    let mut block = Vec::new();
    block
        .try_reserve_exact(BATCH)
        .map_err(|_| CheckpointError::Encrypt(format!("no memory for {BATCH} bytes")))?;
    Ok(block)
}

/// Seals `chunk` (plaintext, then room for the tag) in place as the STREAM chunk number
/// `counter`: the nonce is the counter as 11 big-endian bytes, then 1 for the last chunk.
fn seal_chunk(
    key: &LessSafeKey,
    counter: u64,
    last: bool,
    chunk: &mut [u8],
) -> Result<(), CheckpointError> {
    let at = chunk
        .len()
        .checked_sub(TAG)
        .ok_or_else(|| encrypt_failed("a chunk"))?;
    let (plaintext, tag_room) = chunk.split_at_mut(at);
    let mut nonce = [0u8; 12];
    for (byte, counter_byte) in nonce.iter_mut().skip(3).zip(counter.to_be_bytes()) {
        *byte = counter_byte;
    }
    nonce[11] = u8::from(last);
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), plaintext)
        .map_err(|_| encrypt_failed("a chunk"))?;
    tag_room.copy_from_slice(tag.as_ref());
    Ok(())
}

fn encrypt_failed(what: &str) -> CheckpointError {
    CheckpointError::Encrypt(format!("cannot seal {what}"))
}

fn random_failed(e: getrandom::Error) -> CheckpointError {
    CheckpointError::Encrypt(format!("the system's random source failed: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use std::io::Read;

    fn open(bytes: &[u8], identity: &age::x25519::Identity) -> Vec<u8> {
        let d = age::Decryptor::new(bytes).unwrap();
        let mut r = d
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    /// Every length around the chunk and batch boundaries, written in pieces of every
    /// size, decrypts with the age crate to the same bytes; the size and digest are the
    /// file's.
    #[test]
    fn the_age_crate_reads_every_length_back() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let batch = BATCH_CHUNKS * CHUNK;
        for len in [
            0,
            1,
            CHUNK - 1,
            CHUNK,
            CHUNK + 1,
            3 * CHUNK,
            batch - 1,
            batch,
            batch + 1,
            2 * batch + CHUNK + 7,
        ] {
            let plaintext: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
            for piece in [1000, 40_000, CHUNK, 3 * BATCH] {
                let file = seal_to(&[&recipient], Vec::new(), |w| {
                    for part in plaintext.chunks(piece) {
                        w.write_all(part).unwrap();
                    }
                    Ok(())
                })
                .unwrap();
                let bytes = &file.sink;
                assert_eq!(open(bytes, &identity), plaintext, "{len} in {piece}s");
                let digest: [u8; 32] = Sha256::digest(bytes).into();
                assert_eq!(file.sha256, digest, "{len}");
                assert_eq!(file.len, bytes.len() as u64, "{len}");
                let chunks = len.div_ceil(CHUNK).max(1);
                let header = bytes.len() - 16 - len - chunks * TAG;
                assert!(bytes[..header].ends_with(b"\n"), "{len}");
            }
        }
    }

    #[test]
    fn two_files_of_the_same_plaintext_share_no_bytes_of_payload() {
        let identity = age::x25519::Identity::generate();
        let recipient = identity.to_public();
        let plaintext = vec![0u8; 3 * CHUNK];
        let seal = || {
            seal_to(&[&recipient], Vec::new(), |w| {
                w.write_all(&plaintext).unwrap();
                Ok(())
            })
            .unwrap()
            .sink
        };
        let (a, b) = (seal(), seal());
        let tail = |f: &[u8]| f[f.len() - 3 * SEALED_CHUNK..].to_vec();
        assert_ne!(tail(&a), tail(&b));
        assert_eq!(open(&a, &identity), open(&b, &identity));
    }

    #[test]
    fn a_passphrase_is_not_mixed_with_keys() {
        let recipient = age::x25519::Identity::generate().to_public();
        let mut passphrase = age::scrypt::Recipient::new("p".to_string().into());
        passphrase.set_work_factor(2);
        let e = seal_to(&[&recipient, &passphrase], Vec::new(), |_| Ok(()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("passphrase must be alone"), "{e}");
        let e = seal_to(&[], Vec::new(), |_| Ok(())).err().unwrap();
        assert!(matches!(e, CheckpointError::NoRecipients), "{e}");
    }
}

#[cfg(test)]
mod failures {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A sink that fails after `left` bytes, as a full disk does.
    struct Full {
        left: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() > self.left {
                return Err(io::Error::other("No space left on device"));
            }
            self.left -= buf.len();
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_sink_that_fails_is_reported_and_the_writer_stops() {
        let recipient = age::x25519::Identity::generate().to_public();
        let plaintext = vec![1u8; 20 * BATCH];
        let e = seal_to(&[&recipient], Full { left: 5 * BATCH }, |w| {
            w.write_all(&plaintext)
                .map_err(|e| CheckpointError::Encrypt(e.to_string()))
        })
        .err()
        .unwrap();
        assert!(matches!(e, CheckpointError::WriteState(_)), "{e}");
        assert!(e.to_string().contains("No space left on device"), "{e}");
    }

    #[test]
    fn a_failing_plaintext_writer_ends_the_sink_too() {
        let recipient = age::x25519::Identity::generate().to_public();
        let e = seal_to(&[&recipient], Vec::new(), |w| {
            w.write_all(&vec![0u8; 2 * BATCH]).unwrap();
            Err(CheckpointError::Encrypt("the encoder failed".into()))
        })
        .err()
        .unwrap();
        assert!(e.to_string().contains("the encoder failed"), "{e}");
    }
}
