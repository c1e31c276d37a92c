//! A bounds-checked, big-endian cursor over a borrowed byte slice.
//!
//! Every read either returns a value or a [`WireError`] naming the field; no
//! read can index out of bounds. The reader only ever borrows, so strings and
//! byte ranges it returns point into the caller's frame.

use crate::error::{Field, WireError};

#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader over `buf[pos..]`; offsets it reports are relative to `buf`.
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N], WireError> {
        match self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<N>())
        {
            Some(bytes) => {
                self.pos += N;
                Ok(*bytes)
            }
            None => Err(WireError::Truncated {
                field,
                needed: N,
                available: self.remaining(),
            }),
        }
    }

    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, WireError> {
        self.array::<1>(field).map(|b| b[0])
    }

    pub(crate) fn i16(&mut self, field: Field) -> Result<i16, WireError> {
        self.array(field).map(i16::from_be_bytes)
    }

    pub(crate) fn u16(&mut self, field: Field) -> Result<u16, WireError> {
        self.array(field).map(u16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self, field: Field) -> Result<i32, WireError> {
        self.array(field).map(i32::from_be_bytes)
    }

    pub(crate) fn u32(&mut self, field: Field) -> Result<u32, WireError> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// Skips a fixed-size field of `N` bytes.
    pub(crate) fn skip_fixed<const N: usize>(&mut self, field: Field) -> Result<(), WireError> {
        self.array::<N>(field).map(|_| ())
    }

    /// Skips `n` bytes of a length-prefixed field.
    pub(crate) fn skip(&mut self, n: usize, field: Field) -> Result<(), WireError> {
        let available = self.remaining();
        if n > available {
            return Err(WireError::LengthOutOfBounds {
                field,
                len: n,
                available,
            });
        }
        self.pos += n;
        Ok(())
    }

    /// Takes `n` bytes of a length-prefixed field.
    pub(crate) fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        self.skip(n, field)?;
        Ok(&self.buf[start..self.pos])
    }

    /// An i32 count or length that must not be negative.
    pub(crate) fn len_i32(&mut self, field: Field) -> Result<usize, WireError> {
        let len = self.i32(field)?;
        usize::try_from(len).map_err(|_| WireError::NegativeLength { field, len })
    }

    /// Fluvio's `String`: an i16 length, then UTF-8 bytes.
    ///
    /// Fluvio encodes the length as u16 but decodes it as i16, so a length of
    /// 32768 or more cannot round-trip through it; we reject it as negative
    /// rather than misreading the rest of the frame.
    pub(crate) fn str(&mut self, field: Field) -> Result<&'a str, WireError> {
        let len = self.i16(field)?;
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength {
            field,
            len: i32::from(len),
        })?;
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes).map_err(|_| WireError::InvalidUtf8 { field })
    }

    /// Skips a `String`. Its UTF-8 is still checked: Fluvio's decoder rejects
    /// the whole request when it is invalid, and so must we.
    pub(crate) fn skip_str(&mut self, field: Field) -> Result<(), WireError> {
        self.str(field).map(|_| ())
    }

    /// Fluvio's `Vec<u8>`: an i32 length, then raw bytes.
    pub(crate) fn skip_bytes(&mut self, field: Field) -> Result<(), WireError> {
        let len = self.len_i32(field)?;
        self.skip(len, field)
    }

    /// Fluvio's `bool` and `Option` tag: exactly 0 or 1.
    pub(crate) fn flag(&mut self, field: Field) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::InvalidTag { field, tag }),
        }
    }
}
