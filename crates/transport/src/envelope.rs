//! The envelope around every body: request header in, correlation id out.
//!
//! ```text
//! request:  [i32 size][u16 api_key][i16 version][i32 correlation_id][i16 len + client_id][body]
//! response: [i32 size][i32 correlation_id][body]
//! ```
//!
//! Headers are read zero-copy by [`RequestHeader::parse`] (from `mg-wire`,
//! the hot path's own parser). Bodies off the hot path are Fluvio's types:
//! [`decode_body`] runs Fluvio's decoder at the header's version and refuses
//! a body that leaves bytes unread, since Fluvio would have read them as
//! something else.

use std::io::{self, Cursor};

use bytes::{BufMut, Bytes, BytesMut};
use fluvio_protocol::{Decoder, Encoder, Version};

pub use mg_wire::RequestHeader;

/// Why a request body was refused.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Fluvio's decoder refused the body.
    #[error("malformed {api} request: {source}")]
    Decode {
        /// The API whose body it was.
        api: &'static str,
        /// The decoder's reason.
        source: io::Error,
    },
    /// The body decoded, and bytes were left after it.
    #[error("{count} trailing bytes after the {api} body")]
    Trailing {
        /// The API whose body it was.
        api: &'static str,
        /// Bytes left unread.
        count: usize,
    },
}

/// Why a message could not be encoded: a value this side built cannot be
/// put on the wire. A programming error, never the peer's fault.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The encoded message would not fit Fluvio's i32 size prefix.
    #[error("message of {0} bytes does not fit a frame")]
    TooLarge(usize),
    /// Fluvio's encoder refused the value.
    #[error("encoding failed: {0}")]
    Encoder(#[from] io::Error),
}

/// What encoding a whole frame gives.
pub type EncodeResult = Result<Bytes, EncodeError>;

/// Decodes a request body with Fluvio's decoder at `version`; every byte
/// from `body_start` to the end of `frame` must be used.
pub fn decode_body<T: Decoder + Default>(
    frame: &[u8],
    body_start: usize,
    version: Version,
    api: &'static str,
) -> Result<T, BodyError> {
    let body = frame.get(body_start..).unwrap_or_default();
    let mut cursor = Cursor::new(body);
    let value =
        T::decode_from(&mut cursor, version).map_err(|source| BodyError::Decode { api, source })?;
    let count = body.len() - cursor.position() as usize;
    if count > 0 {
        return Err(BodyError::Trailing { api, count });
    }
    Ok(value)
}

/// Encodes a whole request frame, size prefix included.
pub fn encode_request<T: Encoder>(
    api_key: u16,
    version: Version,
    correlation_id: i32,
    client_id: &str,
    body: &T,
) -> Result<Bytes, EncodeError> {
    let mut header = fluvio_protocol::api::RequestHeader::new(api_key);
    header.set_api_version(version);
    header.set_correlation_id(correlation_id);
    header.set_client_id(client_id);
    let size = header.write_size(0) + body.write_size(version);
    let prefix = i32::try_from(size).map_err(|_| EncodeError::TooLarge(size))?;
    let mut out = BytesMut::with_capacity(4 + size).writer();
    out.get_mut().put_i32(prefix);
    header.encode(out.get_mut(), 0)?;
    body.encode(out.get_mut(), version)?;
    Ok(out.into_inner().freeze())
}

/// Appends a response frame (size prefix, correlation id, body encoded at
/// `version`) to `out`.
pub fn write_response<T: Encoder>(
    out: &mut BytesMut,
    correlation_id: i32,
    version: Version,
    body: &T,
) -> Result<(), EncodeError> {
    let size = 4 + body.write_size(version);
    let prefix = i32::try_from(size).map_err(|_| EncodeError::TooLarge(size))?;
    out.reserve(4 + size);
    let start = out.len();
    out.put_i32(prefix);
    out.put_i32(correlation_id);
    let mut writer = out.writer();
    if let Err(err) = body.encode(writer.get_mut(), version) {
        // Leave `out` as it was: no half response goes on the wire.
        writer.into_inner().truncate(start);
        return Err(err.into());
    }
    Ok(())
}

/// A response frame on its own.
pub fn encode_response<T: Encoder>(
    correlation_id: i32,
    version: Version,
    body: &T,
) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    write_response(&mut out, correlation_id, version, body)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_protocol::link::versions::ApiVersionsRequest;

    #[test]
    fn request_round_trip_and_trailing_bytes() {
        let body = ApiVersionsRequest::default();
        let frame = encode_request(18, 1, 7, "me", &body).unwrap();
        let size = i32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
        assert_eq!(size, frame.len() - 4);
        let (header, start) = RequestHeader::parse(&frame[4..]).unwrap();
        assert_eq!(
            (
                header.api_key,
                header.api_version,
                header.correlation_id,
                header.client_id
            ),
            (18, 1, 7, "me")
        );
        let back: ApiVersionsRequest = decode_body(&frame[4..], start, 1, "ApiVersions").unwrap();
        assert_eq!(back.client_version, body.client_version);

        let mut long = frame[4..].to_vec();
        long.extend_from_slice(&[0, 0]);
        assert!(matches!(
            decode_body::<ApiVersionsRequest>(&long, start, 1, "ApiVersions"),
            Err(BodyError::Trailing {
                count: 2,
                api: "ApiVersions"
            })
        ));
        assert!(matches!(
            decode_body::<ApiVersionsRequest>(&frame[4..frame.len() - 1], start, 1, "ApiVersions"),
            Err(BodyError::Decode { .. })
        ));
    }

    #[test]
    fn responses_carry_size_and_correlation_id() {
        let mut out = BytesMut::from(&b"xx"[..]);
        write_response(&mut out, 42, 0, &7i32).unwrap();
        assert_eq!(&out[..], &[b'x', b'x', 0, 0, 0, 8, 0, 0, 0, 42, 0, 0, 0, 7]);
        assert_eq!(&encode_response(42, 0, &7i32).unwrap()[..], &out[2..]);
    }
}
