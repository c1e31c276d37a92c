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
    #[inline]
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Self { buf, pos }
    }

    #[inline]
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    #[inline]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    #[inline]
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

    #[inline]
    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, WireError> {
        self.array::<1>(field).map(|b| b[0])
    }

    #[inline]
    pub(crate) fn i16(&mut self, field: Field) -> Result<i16, WireError> {
        self.array(field).map(i16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u16(&mut self, field: Field) -> Result<u16, WireError> {
        self.array(field).map(u16::from_be_bytes)
    }

    #[inline]
    pub(crate) fn i32(&mut self, field: Field) -> Result<i32, WireError> {
        self.array(field).map(i32::from_be_bytes)
    }

    #[inline]
    pub(crate) fn u32(&mut self, field: Field) -> Result<u32, WireError> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// A partition entry's fixed header: u32 partition index, then the i32
    /// length of its record set, read with a single bounds check. The record
    /// bytes are not touched.
    #[inline]
    pub(crate) fn entry_header(&mut self) -> Result<(u32, usize), WireError> {
        let Some(head) = self
            .buf
            .get(self.pos..)
            .and_then(|rest| rest.first_chunk::<8>())
        else {
            return Err(self.clone().entry_header_error());
        };
        let [i0, i1, i2, i3, l0, l1, l2, l3] = *head;
        let partition = u32::from_be_bytes([i0, i1, i2, i3]);
        let len = i32::from_be_bytes([l0, l1, l2, l3]);
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength {
            field: Field::Records,
            len,
        })?;
        self.pos += 8;
        Ok((partition, len))
    }

    /// The precise error for an entry header that does not fit.
    #[cold]
    fn entry_header_error(mut self) -> WireError {
        match self.u32(Field::PartitionIndex) {
            Err(err) => err,
            Ok(_) => match self.i32(Field::Records) {
                Err(err) => err,
                Ok(_) => unreachable_truncation(),
            },
        }
    }

    /// Skips a fixed-size field of `N` bytes.
    #[inline]
    pub(crate) fn skip_fixed<const N: usize>(&mut self, field: Field) -> Result<(), WireError> {
        self.array::<N>(field).map(|_| ())
    }

    /// Skips `n` bytes of a length-prefixed field.
    #[inline]
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
    #[inline]
    pub(crate) fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        self.skip(n, field)?;
        Ok(&self.buf[start..self.pos])
    }

    /// An i32 count or length that must not be negative.
    #[inline]
    pub(crate) fn len_i32(&mut self, field: Field) -> Result<usize, WireError> {
        let len = self.i32(field)?;
        usize::try_from(len).map_err(|_| WireError::NegativeLength { field, len })
    }

    /// Fluvio's `String`: an i16 length, then UTF-8 bytes.
    ///
    /// Fluvio encodes the length as u16 but decodes it as i16, so a length of
    /// 32768 or more cannot round-trip through it; we reject it as negative
    /// rather than misreading the rest of the frame.
    #[inline]
    pub(crate) fn str(&mut self, field: Field) -> Result<&'a str, WireError> {
        let bytes = self.str_bytes(field)?;
        utf8(bytes).ok_or(WireError::InvalidUtf8 { field })
    }

    /// A `String` that an earlier walk over these same bytes already read
    /// with [`str`](Self::str): its UTF-8 is not checked again.
    ///
    /// Views call this when they re-walk a body that `parse_body` validated.
    #[inline]
    pub(crate) fn str_validated(&mut self, field: Field) -> Result<&'a str, WireError> {
        let bytes = self.str_bytes(field)?;
        debug_assert!(
            std::str::from_utf8(bytes).is_ok(),
            "re-walked an unvalidated body"
        );
        #[allow(unsafe_code)]
        // SAFETY: views over a frame exist only after `ProduceRequest::parse_body`
        // walked the whole body and checked every string on this path with
        // `str`, and the frame is an immutable `Bytes`, so these are the bytes
        // checked then. Tested by the differential tests, which re-walk frames
        // with non-ASCII names in debug builds, where the assertion above
        // checks again.
        Ok(unsafe { std::str::from_utf8_unchecked(bytes) })
    }

    #[inline]
    fn str_bytes(&mut self, field: Field) -> Result<&'a [u8], WireError> {
        let len = self.i16(field)?;
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength {
            field,
            len: i32::from(len),
        })?;
        self.take(len, field)
    }

    /// Skips a `String`. Its UTF-8 is still checked: Fluvio's decoder rejects
    /// the whole request when it is invalid, and so must we.
    #[inline]
    pub(crate) fn skip_str(&mut self, field: Field) -> Result<(), WireError> {
        self.str(field).map(|_| ())
    }

    /// Fluvio's `Vec<u8>`: an i32 length, then raw bytes.
    #[inline]
    pub(crate) fn skip_bytes(&mut self, field: Field) -> Result<(), WireError> {
        let len = self.len_i32(field)?;
        self.skip(len, field)
    }

    /// Fluvio's `bool` and `Option` tag: exactly 0 or 1.
    #[inline]
    pub(crate) fn flag(&mut self, field: Field) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(WireError::InvalidTag { field, tag }),
        }
    }
}

/// Only reached if 8 bytes were missing but 4 + 4 were not: impossible, and
/// still answered with an error rather than a panic.
#[cold]
fn unreachable_truncation() -> WireError {
    WireError::Truncated {
        field: Field::Records,
        needed: 4,
        available: 0,
    }
}

/// UTF-8 validation with an inlined ASCII fast path: names on the hot path
/// are short and nearly always ASCII.
#[inline]
fn utf8(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        #[allow(unsafe_code)]
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Branch-free ASCII check: OR all bytes together eight at a time and look
/// at the high bits once, instead of testing byte by byte.
#[inline]
fn is_ascii(bytes: &[u8]) -> bool {
    let (words, tail) = bytes.as_chunks::<8>();
    let high = words
        .iter()
        .fold(0u64, |acc, w| acc | u64::from_ne_bytes(*w));
    let tail = tail.iter().fold(0u8, |acc, b| acc | b);
    high & 0x8080_8080_8080_8080 == 0 && tail < 0x80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_check_agrees_with_std() {
        for len in 0..40 {
            let mut bytes = vec![b'a'; len];
            assert!(is_ascii(&bytes));
            for at in 0..len {
                bytes[at] = 0x80 | at as u8;
                assert!(!is_ascii(&bytes), "len {len}, high byte at {at}");
                bytes[at] = b'a';
            }
        }
    }

    #[test]
    fn utf8_fast_path_agrees_with_std() {
        let cases: [&[u8]; 7] = [
            b"",
            b"topic-1",
            "t\u{e9}".as_bytes(),
            "\u{1F600}".as_bytes(),
            &[0xff],
            &[0xc3],
            &[b'a', 0x80],
        ];
        for bytes in cases {
            assert_eq!(utf8(bytes), std::str::from_utf8(bytes).ok(), "{bytes:?}");
        }
    }

    #[test]
    fn validated_read_returns_the_checked_string() {
        let frame = [0, 3, b'a', 0xc3, 0xa9];
        let mut first = Reader::new(&frame, 0);
        let checked = first.str(Field::TopicName).unwrap();
        let mut again = Reader::new(&frame, 0);
        assert_eq!(again.str_validated(Field::TopicName).unwrap(), checked);
        assert_eq!(checked, "a\u{e9}");
    }
}
