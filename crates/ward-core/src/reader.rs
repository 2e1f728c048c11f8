//! A cursor over a byte slice that never reads out of bounds.
//!
//! Modelled on rustls' `Reader`: every read names the field it is reading, so a truncated
//! input produces an error that says which field was cut short and at which offset.

/// The input ended inside a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("truncated at byte {offset}: {field} needs {needed} bytes, {available} remain")]
pub struct Truncated {
    pub field: &'static str,
    pub offset: usize,
    pub needed: usize,
    pub available: usize,
}

/// A forward-only cursor over borrowed bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes consumed so far: the offset of the next read.
    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Takes exactly `n` bytes, or fails without consuming anything.
    pub fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], Truncated> {
        let out = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            })?;
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(field, N)?);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, Truncated> {
        Ok(self.array::<1>(field)?[0])
    }

    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, Truncated> {
        self.array(field).map(u16::from_le_bytes)
    }

    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, Truncated> {
        self.array(field).map(u32::from_le_bytes)
    }

    pub fn i32_le(&mut self, field: &'static str) -> Result<i32, Truncated> {
        self.array(field).map(i32::from_le_bytes)
    }

    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, Truncated> {
        self.array(field).map(u64::from_le_bytes)
    }

    pub fn i64_le(&mut self, field: &'static str) -> Result<i64, Truncated> {
        self.array(field).map(i64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_little_endian_and_tracks_offset() {
        let bytes = [1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9];
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32_le("a"), Ok(1));
        assert_eq!(r.u64_le("b"), Ok(2));
        assert_eq!(r.offset(), 12);
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn truncation_names_the_field_and_consumes_nothing() {
        let bytes = [1, 2, 3];
        let mut r = Reader::new(&bytes);
        let err = r.u32_le("ndim").unwrap_err();
        assert_eq!(err.field, "ndim");
        assert_eq!(err.needed, 4);
        assert_eq!(err.available, 3);
        assert_eq!(r.offset(), 0);
        assert_eq!(r.take("x", 3), Ok(&bytes[..]));
    }
}
