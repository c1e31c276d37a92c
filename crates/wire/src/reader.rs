//! A bounds-checked, big-endian cursor over a borrowed byte slice.
//!
//! Every read either returns a value or a failure naming the field; no read
//! can index out of bounds. The reader only ever borrows, so strings and
//! byte ranges it returns point into the caller's frame.
//!
//! Failures come in two weights, chosen by the reader's type parameter
//! ([`Fail`]). Walks are written once, generic over it. The hot path walks a
//! frame with [`Bail`], which carries nothing, so every check compiles to a
//! plain branch to one exit. Only if that walk fails is the frame walked
//! again with [`WireError`], to say exactly what is wrong and where.

use std::marker::PhantomData;

use crate::error::{Field, WireError};

/// How a [`Reader`] reports a failed read.
pub(crate) trait Fail: Sized {
    /// The failure for `error`, built only if this kind keeps details.
    fn from_error(error: impl FnOnce() -> WireError) -> Self;
}

impl Fail for WireError {
    #[inline(always)]
    fn from_error(error: impl FnOnce() -> WireError) -> Self {
        error()
    }
}

/// A failure with no details: the caller walks again with [`WireError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Bail;

impl Fail for Bail {
    #[inline(always)]
    fn from_error(_: impl FnOnce() -> WireError) -> Self {
        Bail
    }
}

#[derive(Debug)]
pub(crate) struct Reader<'a, E = WireError> {
    /// The bytes not yet read: every read checks one length, this one's.
    rest: &'a [u8],
    /// Length of the whole buffer, so positions can be reported as offsets
    /// into it (`len - rest.len()`).
    len: usize,
    fail: PhantomData<fn() -> E>,
}

impl<E> Clone for Reader<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<E> Copy for Reader<'_, E> {}

impl<'a, E: Fail> Reader<'a, E> {
    /// A reader over `buf[pos..]`; offsets it reports are relative to `buf`.
    /// A `pos` past the end reads as an empty rest.
    #[inline(always)]
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Self {
            rest: buf.get(pos..).unwrap_or_default(),
            len: buf.len(),
            fail: PhantomData,
        }
    }

    /// The same position, read with another kind of failure.
    #[inline(always)]
    pub(crate) fn with_fail<F: Fail>(self) -> Reader<'a, F> {
        Reader {
            rest: self.rest,
            len: self.len,
            fail: PhantomData,
        }
    }

    #[inline(always)]
    pub(crate) fn pos(&self) -> usize {
        self.len - self.rest.len()
    }

    #[inline(always)]
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The next `N` bytes, if there are that many, without consuming them.
    #[inline(always)]
    pub(crate) fn peek<const N: usize>(&self) -> Option<&'a [u8; N]> {
        self.rest.first_chunk::<N>()
    }

    /// Whether the bytes not yet read are exactly `bytes`.
    #[inline(always)]
    pub(crate) fn rest_is<const N: usize>(&self, bytes: &[u8; N]) -> bool {
        self.rest.len() == N && self.peek::<N>() == Some(bytes)
    }

    /// Consumes `N` bytes that [`peek`](Self::peek) just returned.
    #[inline(always)]
    pub(crate) fn consume_peeked<const N: usize>(&mut self) {
        debug_assert!(self.rest.len() >= N);
        self.rest = self.rest.get(N..).unwrap_or_default();
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self, field: Field) -> Result<[u8; N], E> {
        match self.rest.split_first_chunk::<N>() {
            Some((bytes, rest)) => {
                self.rest = rest;
                Ok(*bytes)
            }
            None => Err(E::from_error(|| WireError::Truncated {
                field,
                needed: N,
                available: self.rest.len(),
            })),
        }
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self, field: Field) -> Result<u8, E> {
        self.array::<1>(field).map(|b| b[0])
    }

    #[inline(always)]
    pub(crate) fn i16(&mut self, field: Field) -> Result<i16, E> {
        self.array(field).map(i16::from_be_bytes)
    }

    #[inline(always)]
    pub(crate) fn u16(&mut self, field: Field) -> Result<u16, E> {
        self.array(field).map(u16::from_be_bytes)
    }

    #[inline(always)]
    pub(crate) fn i32(&mut self, field: Field) -> Result<i32, E> {
        self.array(field).map(i32::from_be_bytes)
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self, field: Field) -> Result<u32, E> {
        self.array(field).map(u32::from_be_bytes)
    }

    /// A partition entry's fixed header: u32 partition index, then the i32
    /// length of its record set, read with a single bounds check. The record
    /// bytes are not touched.
    #[inline(always)]
    pub(crate) fn entry_header(&mut self) -> Result<(u32, usize), E> {
        let Some((head, rest)) = self.rest.split_first_chunk::<8>() else {
            return Err(E::from_error(|| self.entry_header_error()));
        };
        let [i0, i1, i2, i3, l0, l1, l2, l3] = *head;
        let partition = u32::from_be_bytes([i0, i1, i2, i3]);
        let len = i32::from_be_bytes([l0, l1, l2, l3]);
        let len = usize::try_from(len).map_err(|_| {
            E::from_error(|| WireError::NegativeLength {
                field: Field::Records,
                len,
            })
        })?;
        self.rest = rest;
        Ok((partition, len))
    }

    /// An entry header that an earlier walk over these same bytes already
    /// checked with [`entry_header`](Self::entry_header): its length is
    /// known to be non-negative and to fit, so only the header's own bounds
    /// are checked (and a wrong guess could only end the walk early, never
    /// read out of bounds). Returns the index and the record bytes' offset
    /// and length.
    #[inline(always)]
    pub(crate) fn validated_entry(&mut self) -> Option<(u32, usize, usize)> {
        let (head, rest) = self.rest.split_first_chunk::<8>()?;
        let [i0, i1, i2, i3, l0, l1, l2, l3] = *head;
        let len = u32::from_be_bytes([l0, l1, l2, l3]) as usize;
        let start = self.len - rest.len();
        (_, self.rest) = rest.split_at_checked(len)?;
        Some((u32::from_be_bytes([i0, i1, i2, i3]), start, len))
    }

    /// The precise error for an entry header that does not fit.
    #[cold]
    fn entry_header_error(&self) -> WireError {
        let mut r = Reader::<WireError> {
            rest: self.rest,
            len: self.len,
            fail: PhantomData,
        };
        match r.u32(Field::PartitionIndex) {
            Err(err) => err,
            Ok(_) => match r.i32(Field::Records) {
                Err(err) => err,
                Ok(_) => unreachable_truncation(),
            },
        }
    }

    /// Skips a fixed-size field of `N` bytes.
    #[inline(always)]
    pub(crate) fn skip_fixed<const N: usize>(&mut self, field: Field) -> Result<(), E> {
        self.array::<N>(field).map(|_| ())
    }

    /// Skips `n` bytes of a length-prefixed field.
    #[inline(always)]
    pub(crate) fn skip(&mut self, n: usize, field: Field) -> Result<(), E> {
        self.take(n, field).map(|_| ())
    }

    /// Takes `n` bytes of a length-prefixed field.
    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize, field: Field) -> Result<&'a [u8], E> {
        match self.rest.split_at_checked(n) {
            Some((taken, rest)) => {
                self.rest = rest;
                Ok(taken)
            }
            None => Err(E::from_error(|| WireError::LengthOutOfBounds {
                field,
                len: n,
                available: self.rest.len(),
            })),
        }
    }

    /// An i32 count or length that must not be negative.
    #[inline(always)]
    pub(crate) fn len_i32(&mut self, field: Field) -> Result<usize, E> {
        let len = self.i32(field)?;
        usize::try_from(len).map_err(|_| E::from_error(|| WireError::NegativeLength { field, len }))
    }

    /// Fluvio's `String`: an i16 length, then UTF-8 bytes.
    ///
    /// Fluvio encodes the length as u16 but decodes it as i16, so a length of
    /// 32768 or more cannot round-trip through it; we reject it as negative
    /// rather than misreading the rest of the frame.
    #[inline(always)]
    pub(crate) fn str(&mut self, field: Field) -> Result<&'a str, E> {
        let bytes = self.str_bytes(field)?;
        utf8(bytes).ok_or_else(|| E::from_error(|| WireError::InvalidUtf8 { field }))
    }

    /// A `String` that an earlier walk over these same bytes already read
    /// with [`str`](Self::str): its UTF-8 is not checked again.
    ///
    /// Views call this when they re-walk a body that `parse_body` validated.
    #[inline(always)]
    pub(crate) fn str_validated(&mut self, field: Field) -> Result<&'a str, E> {
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

    #[inline(always)]
    fn str_bytes(&mut self, field: Field) -> Result<&'a [u8], E> {
        let len = self.i16(field)?;
        let len = usize::try_from(len).map_err(|_| {
            E::from_error(|| WireError::NegativeLength {
                field,
                len: i32::from(len),
            })
        })?;
        self.take(len, field)
    }

    /// Skips a `String`. Its UTF-8 is still checked: Fluvio's decoder rejects
    /// the whole request when it is invalid, and so must we.
    #[inline(always)]
    pub(crate) fn skip_str(&mut self, field: Field) -> Result<(), E> {
        self.str(field).map(|_| ())
    }

    /// Fluvio's `Vec<u8>`: an i32 length, then raw bytes.
    #[inline(always)]
    pub(crate) fn skip_bytes(&mut self, field: Field) -> Result<(), E> {
        let len = self.len_i32(field)?;
        self.skip(len, field)
    }

    /// Fluvio's `bool` and `Option` tag: exactly 0 or 1.
    #[inline(always)]
    pub(crate) fn flag(&mut self, field: Field) -> Result<bool, E> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            tag => Err(E::from_error(|| WireError::InvalidTag { field, tag })),
        }
    }
}

/// The error of a detailed walk ([`WireError`]) over a frame whose fast walk
/// ([`Bail`]) failed. Both run the same code over the same bytes, so the
/// detailed walk fails too; were it ever to pass, this still answers with an
/// error (and debug builds stop, so tests catch it).
#[cold]
pub(crate) fn detailed_error<T>(walked: Result<T, WireError>) -> WireError {
    match walked {
        Err(error) => error,
        Ok(_) => {
            debug_assert!(
                cfg!(not(debug_assertions)),
                "the detailed walk accepted what the fast walk refused"
            );
            unreachable_truncation()
        }
    }
}

/// Only reached if a fixed run of bytes was missing but each of its fields
/// was not: impossible, and still answered with an error rather than a panic.
#[cold]
pub(crate) fn unreachable_truncation() -> WireError {
    WireError::Truncated {
        field: Field::Records,
        needed: 4,
        available: 0,
    }
}

/// UTF-8 validation with an inlined ASCII fast path: names on the hot path
/// are short and nearly always ASCII.
#[inline(always)]
fn utf8(bytes: &[u8]) -> Option<&str> {
    if is_ascii(bytes) {
        #[allow(unsafe_code)]
        // SAFETY: every ASCII byte sequence is valid UTF-8.
        Some(unsafe { std::str::from_utf8_unchecked(bytes) })
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// ASCII check without a byte loop: the high bits of every byte are ORed
/// together from a few possibly overlapping loads (names here are mostly
/// 3 to 16 bytes), and tested once.
#[inline(always)]
fn is_ascii(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let word = |chunk: &[u8; 8]| u64::from_ne_bytes(*chunk);
    let half = |chunk: &[u8; 4]| u64::from(u32::from_ne_bytes(*chunk));
    let high = match (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) {
        (Some(first), Some(last)) if bytes.len() <= 16 => word(first) | word(last),
        (Some(_), Some(last)) => {
            let (words, _) = bytes.as_chunks::<8>();
            words.iter().fold(word(last), |acc, w| acc | word(w))
        }
        _ => match (bytes.first_chunk::<4>(), bytes.last_chunk::<4>()) {
            (Some(first), Some(last)) => half(first) | half(last),
            // 0 to 3 bytes: the first, middle and last byte are all of them.
            _ => match bytes.first() {
                None => 0,
                Some(first) => u64::from(first | bytes[bytes.len() / 2] | bytes[bytes.len() - 1]),
            },
        },
    };
    high & HIGH == 0
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
        let mut first = Reader::<WireError>::new(&frame, 0);
        let checked = first.str(Field::TopicName).unwrap();
        let mut again = Reader::<WireError>::new(&frame, 0);
        assert_eq!(again.str_validated(Field::TopicName).unwrap(), checked);
        assert_eq!(checked, "a\u{e9}");
    }
}
