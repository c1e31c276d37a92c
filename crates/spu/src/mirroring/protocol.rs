//! The mirror channel's wire: StartMirror on the SPU's public port, then
//! Fluvio 0.50's SPU-to-SPU mirror sub-protocol (`COMMON_MIRROR_VERSION` 1),
//! requests only, in both directions, never answered.
//!
//! ```text
//! remote -> home   key 0  SyncRecords      { hw i64, leo i64, records: i32 len + stored batches }
//!                  key 1  UpdateEdgeOffset { replica: ReplicaKey, leo i64, hw i64 }
//! home -> remote   key 0  UpdateHomeOffset { replica: ReplicaKey, leo i64, hw i64 }
//!                  key 1  SyncRecords      (same body as above)
//! ```
//!
//! The same key means different things in each direction, so each side
//! names the keys it sends and the keys it takes ([`Keys`]). SyncRecords is
//! read as a view over the frame: its batches are a slice of it, appended
//! as they came.

use bytes::{BufMut, Bytes, BytesMut};
use fluvio_protocol::record::ReplicaKey;
use fluvio_protocol::{Decoder, Encoder};
use mg_transport::{EncodeError, encode_request};

/// Api key of StartMirror on the SPU's public port.
pub const START_MIRROR: u16 = 2000;
/// The mirror sub-protocol's version (Fluvio's `COMMON_MIRROR_VERSION`).
pub const MIRROR_VERSION: i16 = 1;

/// Remote to home: records.
pub const REMOTE_SYNC_RECORDS: u16 = 0;
/// Remote to home: the remote's log end, when it receives (home-to-remote).
pub const REMOTE_UPDATE_OFFSET: u16 = 1;
/// Home to remote: the home's log end, when it receives (to-home).
pub const HOME_UPDATE_OFFSET: u16 = 0;
/// Home to remote: records (home-to-remote).
pub const HOME_SYNC_RECORDS: u16 = 1;

/// The keys one end of a link uses: what a record message and an offset
/// message are called in the direction it sends, and in the one it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    /// Key of the records it sends or reads.
    pub sync: u16,
    /// Key of the offsets it sends or reads.
    pub offsets: u16,
}

impl Keys {
    /// What the remote sends (and the home reads).
    pub const FROM_REMOTE: Keys = Keys {
        sync: REMOTE_SYNC_RECORDS,
        offsets: REMOTE_UPDATE_OFFSET,
    };
    /// What the home sends (and the remote reads).
    pub const FROM_HOME: Keys = Keys {
        sync: HOME_SYNC_RECORDS,
        offsets: HOME_UPDATE_OFFSET,
    };
}

/// A receiver's log end, as it announces it (Fluvio's `ReplicaOffsetRequest`).
#[derive(Encoder, Decoder, Default, Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOffsets {
    /// The partition, as the sender of this message names it.
    pub replica: ReplicaKey,
    /// Its log end offset.
    pub leo: i64,
    /// Its high watermark.
    pub hw: i64,
}

/// Why a mirror frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MirrorFrameError {
    /// The body ends before its fields do.
    #[error("truncated SyncRecords: {0} body bytes")]
    Truncated(usize),
    /// The record set's length is negative or runs past the frame.
    #[error("SyncRecords declares {declared} record bytes, {available} follow")]
    BadLength {
        /// The declared length.
        declared: i32,
        /// Bytes left in the frame.
        available: usize,
    },
    /// Bytes follow the record set.
    #[error("{0} trailing bytes after SyncRecords")]
    Trailing(usize),
}

/// Records on their way between clusters: the sender's log end and high
/// watermark, and whole stored batches from the receiver's log end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRecords {
    /// The sender's high watermark.
    pub hw: i64,
    /// The sender's log end offset.
    pub leo: i64,
    /// Stored batches, back to back (a slice of the frame when decoded).
    pub records: Bytes,
}

const SYNC_FIXED: usize = 8 + 8 + 4;

impl SyncRecords {
    /// Reads the body at `body_start` of `frame` (no size prefix), without
    /// copying the records. Their batches are checked when appended.
    pub fn parse(frame: &Bytes, body_start: usize) -> Result<Self, MirrorFrameError> {
        let body = frame.get(body_start..).unwrap_or_default();
        if body.len() < SYNC_FIXED {
            return Err(MirrorFrameError::Truncated(body.len()));
        }
        let i64_at = |at: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&body[at..at + 8]);
            i64::from_be_bytes(raw)
        };
        let (hw, leo) = (i64_at(0), i64_at(8));
        let declared = i32::from_be_bytes([body[16], body[17], body[18], body[19]]);
        let available = body.len() - SYNC_FIXED;
        let len = usize::try_from(declared)
            .ok()
            .filter(|len| *len <= available)
            .ok_or(MirrorFrameError::BadLength {
                declared,
                available,
            })?;
        if len < available {
            return Err(MirrorFrameError::Trailing(available - len));
        }
        let start = body_start + SYNC_FIXED;
        Ok(Self {
            hw,
            leo,
            records: frame.slice(start..start + len),
        })
    }

    /// The frame's head (size prefix, header, hw, leo, records length); the
    /// records follow it on the wire as they are, uncopied.
    pub fn encode_head(
        &self,
        api_key: u16,
        correlation_id: i32,
        client_id: &str,
    ) -> Result<Bytes, EncodeError> {
        let records = i32::try_from(self.records.len())
            .map_err(|_| EncodeError::TooLarge(self.records.len()))?;
        let mut header = fluvio_protocol::api::RequestHeader::new(api_key);
        header.set_api_version(MIRROR_VERSION);
        header.set_correlation_id(correlation_id);
        header.set_client_id(client_id);
        let size = header.write_size(0) + SYNC_FIXED + self.records.len();
        let prefix = i32::try_from(size).map_err(|_| EncodeError::TooLarge(size))?;
        let mut out = BytesMut::with_capacity(4 + header.write_size(0) + SYNC_FIXED);
        out.put_i32(prefix);
        header.encode(&mut out, 0)?;
        out.put_i64(self.hw);
        out.put_i64(self.leo);
        out.put_i32(records);
        Ok(out.freeze())
    }
}

/// A whole offsets frame.
pub fn encode_offsets(
    api_key: u16,
    correlation_id: i32,
    offsets: &ReplicaOffsets,
) -> Result<Bytes, EncodeError> {
    encode_request(
        api_key,
        MIRROR_VERSION,
        correlation_id,
        "mirror home",
        offsets,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(records: &[u8]) -> Bytes {
        let sync = SyncRecords {
            hw: 3,
            leo: 5,
            records: Bytes::copy_from_slice(records),
        };
        let mut whole = sync.encode_head(0, 9, "leader: t-0").unwrap().to_vec();
        whole.extend_from_slice(records);
        Bytes::from(whole).slice(4..)
    }

    #[test]
    fn sync_records_round_trip_and_refusals() {
        let frame = frame(b"batches");
        let (header, start) = mg_transport::RequestHeader::parse(&frame).unwrap();
        assert_eq!(
            (header.api_key, header.api_version, header.correlation_id),
            (0, 1, 9)
        );
        let sync = SyncRecords::parse(&frame, start).unwrap();
        assert_eq!(
            (sync.hw, sync.leo, &sync.records[..]),
            (3, 5, &b"batches"[..])
        );

        let cut = frame.slice(..frame.len() - 1);
        assert_eq!(
            SyncRecords::parse(&cut, start),
            Err(MirrorFrameError::BadLength {
                declared: 7,
                available: 6
            })
        );
        assert_eq!(
            SyncRecords::parse(&frame.slice(..start + 10), start),
            Err(MirrorFrameError::Truncated(10))
        );
        let mut long = frame.to_vec();
        long.push(0);
        assert_eq!(
            SyncRecords::parse(&Bytes::from(long), start),
            Err(MirrorFrameError::Trailing(1))
        );
    }
}
