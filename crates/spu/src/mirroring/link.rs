//! One mirror link, once its handshake is done: the receiving end and the
//! sending end. Both ends of both directions run these two loops; only the
//! keys differ ([`Keys`]).
//!
//! ```text
//! receiver: announce LEO -> (SyncRecords -> append at LEO, offsets kept -> announce LEO)*
//! sender:   wait for the receiver's LEO -> (read from it -> SyncRecords)* , at most
//!           WINDOW syncs unanswered; woken by local appends and by the receiver
//! ```
//!
//! The receiver appends through the storage API (`append_mirrored`), never
//! through Produce, so the guard neither sees nor blocks mirrored records;
//! a batch that does not start at the receiver's log end, or fails its
//! CRC, is refused (logged, counted) and the link closes: the sender
//! reconnects and starts again from the log end the receiver announces.
//! No gap, no duplicate.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluvio_controlplane_metadata::mirror::MirrorPairStatus;
use fluvio_protocol::record::ReplicaKey;
use mg_storage::{AppendError, BatchError};
use mg_transport::{BodyError, EncodeError, FrameError, FrameReader, RequestHeader, decode_body};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{debug, info, warn};

use super::MirrorHandles;
use super::protocol::{Keys, MirrorFrameError, ReplicaOffsets, SyncRecords, encode_offsets};
use crate::metrics::LinkStats;

/// The most a sender puts in one SyncRecords.
pub const MAX_SYNC_BYTES: u64 = 1 << 20;
/// SyncRecords a sender keeps unanswered.
const WINDOW: usize = 4;
/// How often a receiver repeats its log end (a keep-alive, and a resync
/// for a sender that lost track).
const ANNOUNCE_EVERY: Duration = Duration::from_secs(5);
/// A sender whose syncs go unanswered this long starts again from the
/// receiver's last announced log end.
const STALLED_AFTER: Duration = Duration::from_secs(10);
/// How often, at most, an idle sender answers the receiver's log end with
/// an empty SyncRecords carrying its own: the receiver then knows its lag
/// (zero) without waiting for records. Fluvio's receivers skip an empty
/// record set and answer with their offsets, so this is bounded here.
const IDLE_SYNC_EVERY: Duration = Duration::from_secs(5);

/// What a link is: the partition on this side, who is on the other.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// The remote cluster's id (a metrics label, on either side).
    pub(crate) remote: String,
    /// The mirror object this link belongs to (the remote's id on a home,
    /// the home's id on a remote): its pairing is reported under it.
    pub(crate) mirror: String,
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) peer: String,
    /// The mirror epoch the link was admitted or dialed at: its records
    /// are appended only while the partition is not fenced past it.
    pub(crate) epoch: u32,
}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LinkError {
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("header: {0}")]
    Header(#[from] mg_wire::WireError),
    #[error("unexpected api key {found} on the mirror channel (expected {expected})")]
    UnexpectedKey { found: u16, expected: u16 },
    #[error("{0}")]
    Sync(#[from] MirrorFrameError),
    #[error("{0}")]
    Offsets(#[from] BodyError),
    #[error("refused a misaligned batch: expected base offset {expected}, found {found}")]
    Misaligned { expected: i64, found: i64 },
    #[error("refused a corrupt batch: {0}")]
    Corrupt(BatchError),
    #[error("fenced: the link's mirror epoch {epoch} is older than the partition's {fence}")]
    Fenced { epoch: u32, fence: u32 },
    #[error("storage: {0}")]
    Storage(String),
    #[error("the receiver is ahead of the sender: receiver {receiver}, sender {sender}")]
    ReceiverAhead { receiver: i64, sender: i64 },
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("the peer closed the link")]
    Closed,
}

/// How a link ended without a fault.
#[derive(Debug)]
pub(crate) enum Ended {
    /// This side stopped it, for the reason given.
    Stopped(String),
}

/// Logs how a link ended and records it in the pairing status.
pub(super) fn finish(link: &Link, handles: &MirrorHandles, ended: Result<Ended, LinkError>) {
    let (topic, partition, peer) = (&link.topic, link.partition, &link.peer);
    match ended {
        Ok(Ended::Stopped(reason)) => {
            info!(%peer, %topic, partition, %reason, "mirror link closed");
        }
        Err(LinkError::Closed) => {
            info!(%peer, %topic, partition, "mirror link closed by the peer");
            handles.pairing.set(
                &link.mirror,
                MirrorPairStatus::DetailFailure("closed connection".into()),
            );
        }
        Err(err) => {
            warn!(%peer, %topic, partition, reason = %err, "closing mirror link");
            handles.pairing.set(
                &link.mirror,
                MirrorPairStatus::DetailFailure(err.to_string()),
            );
        }
    }
}

async fn log_end(handles: &MirrorHandles, link: &Link) -> Result<i64, LinkError> {
    let read = handles
        .disk
        .read(&link.topic, link.partition, i64::MAX, 0)
        .await?;
    Ok(read.high_watermark)
}

async fn announce<W: AsyncWrite + Unpin>(
    writer: &mut W,
    link: &Link,
    key: u16,
    leo: i64,
) -> Result<(), LinkError> {
    let offsets = ReplicaOffsets {
        replica: ReplicaKey::new(link.topic.clone(), link.partition),
        leo,
        hw: leo,
    };
    writer.write_all(&encode_offsets(key, 0, &offsets)?).await?;
    Ok(())
}

/// Runs the link's loop: [`send`] if this side `sends`, else [`receive`].
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run<R, W>(
    sends: bool,
    link: &Link,
    frames: &mut FrameReader<R>,
    writer: &mut W,
    mine: Keys,
    theirs: Keys,
    handles: &MirrorHandles,
    stop: impl Future<Output = String>,
) -> Result<Ended, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if sends {
        send(link, frames, writer, mine, theirs, handles, stop).await
    } else {
        receive(link, frames, writer, mine, theirs, handles, stop).await
    }
}

/// The receiving end: announces this partition's log end, then appends
/// every SyncRecords at it, offsets and bytes as they came, and announces
/// the new end. `mine` are the keys this side sends, `theirs` the peer's.
async fn receive<R, W>(
    link: &Link,
    frames: &mut FrameReader<R>,
    writer: &mut W,
    mine: Keys,
    theirs: Keys,
    handles: &MirrorHandles,
    stop: impl Future<Output = String>,
) -> Result<Ended, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stats = handles
        .metrics
        .link(&link.remote, &link.topic, link.partition, "receiver");
    let _up = Up::new(&stats);
    // Unknown until the sender says where its log ends.
    stats.set_lag(-1);
    let mut leo = log_end(handles, link).await?;
    announce(writer, link, mine.offsets, leo).await?;
    // Paired once the sender's records come (the home side is paired as
    // soon as it admits the remote: see `home::serve`).
    debug!(peer = %link.peer, topic = %link.topic, partition = link.partition, leo, "receiving");
    let mut stop = std::pin::pin!(stop);
    let mut tick = tokio::time::interval(ANNOUNCE_EVERY);
    tick.tick().await;
    loop {
        let frame = tokio::select! {
            reason = &mut stop => return Ok(Ended::Stopped(reason)),
            _ = tick.tick() => {
                announce(writer, link, mine.offsets, leo).await?;
                continue;
            }
            frame = frames.next() => frame?.ok_or(LinkError::Closed)?,
        };
        let (header, start) = RequestHeader::parse(&frame)?;
        if header.api_key != theirs.sync {
            return Err(LinkError::UnexpectedKey {
                found: header.api_key,
                expected: theirs.sync,
            });
        }
        let sync = SyncRecords::parse(&frame, start)?;
        stats.seen();
        if !sync.records.is_empty() {
            leo = append(link, handles, &stats, leo, sync.records).await?;
        }
        stats.set_lag(sync.leo - leo);
        handles
            .pairing
            .set(&link.mirror, MirrorPairStatus::Successful);
        announce(writer, link, mine.offsets, leo).await?;
    }
}

async fn append(
    link: &Link,
    handles: &MirrorHandles,
    stats: &LinkStats,
    leo: i64,
    records: Bytes,
) -> Result<i64, LinkError> {
    let bytes = records.len() as u64;
    match handles
        .disk
        .append_mirrored(&link.topic, link.partition, records, link.epoch)
        .await
    {
        Ok(appended) => {
            let end = appended.base_offset + appended.records;
            stats.add(appended.records as u64, bytes);
            handles.offsets.publish(&link.topic, link.partition, end);
            handles.unreported.mark(&link.topic, link.partition);
            Ok(end)
        }
        Err(AppendError::Misaligned { expected, found }) => {
            stats.refuse();
            Err(LinkError::Misaligned { expected, found })
        }
        Err(AppendError::InvalidBatch(err)) => {
            stats.refuse();
            Err(LinkError::Corrupt(err))
        }
        Err(AppendError::Fenced { epoch, fence }) => {
            stats.refuse();
            handles.metrics.mirror_refused("fenced");
            Err(LinkError::Fenced { epoch, fence })
        }
        Err(err) => {
            debug!(leo, %err, "mirrored append failed");
            Err(LinkError::Storage(err.to_string()))
        }
    }
}

/// The sending end: waits for the receiver's log end, then sends this
/// partition's stored batches from it, as they are read from the log,
/// whenever this log grows. `mine` are the keys this side sends, `theirs`
/// the peer's.
async fn send<R, W>(
    link: &Link,
    frames: &mut FrameReader<R>,
    writer: &mut W,
    mine: Keys,
    theirs: Keys,
    handles: &MirrorHandles,
    stop: impl Future<Output = String>,
) -> Result<Ended, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let stats = handles
        .metrics
        .link(&link.remote, &link.topic, link.partition, "sender");
    let _up = Up::new(&stats);
    let mut stop = std::pin::pin!(stop);
    let current = log_end(handles, link).await?;
    let mut local = handles
        .offsets
        .subscribe(&link.topic, link.partition, current);
    let client_id = format!("leader: {}-{}", link.topic, link.partition);
    // The receiver speaks first.
    let mut peer_leo = tokio::select! {
        reason = &mut stop => return Ok(Ended::Stopped(reason)),
        frame = frames.next() => read_offsets(&frame?.ok_or(LinkError::Closed)?, theirs)?,
    };
    handles
        .pairing
        .set(&link.mirror, MirrorPairStatus::Successful);
    info!(peer = %link.peer, topic = %link.topic, partition = link.partition, peer_leo, "mirror link up: sending");
    let mut sent_upto = peer_leo;
    let mut in_flight: VecDeque<i64> = VecDeque::new();
    let mut correlation = 0i32;
    // This log's end as far as known: the watch, or a read that found more
    // (an append is announced on the watch a moment after it is readable).
    let mut local_leo = current;
    let mut idle_sync_at: Option<tokio::time::Instant> = None;
    loop {
        local_leo = local_leo.max(*local.borrow_and_update());
        if peer_leo > local_leo {
            return Err(LinkError::ReceiverAhead {
                receiver: peer_leo,
                sender: local_leo,
            });
        }
        while in_flight.len() < WINDOW && sent_upto < local_leo {
            let read = handles
                .disk
                .read(&link.topic, link.partition, sent_upto, MAX_SYNC_BYTES)
                .await?;
            local_leo = local_leo.max(read.high_watermark);
            let Some((first, end, records)) = span(&read.records) else {
                break;
            };
            if first != sent_upto {
                // The receiver's end is not a batch boundary here: the two
                // logs are not the same log.
                return Err(LinkError::Misaligned {
                    expected: sent_upto,
                    found: first,
                });
            }
            let sync = SyncRecords {
                hw: read.high_watermark,
                leo: read.high_watermark,
                records: Bytes::from(read.records),
            };
            correlation = correlation.wrapping_add(1);
            let head = sync.encode_head(mine.sync, correlation, &client_id)?;
            writer.write_all(&head).await?;
            writer.write_all(&sync.records).await?;
            stats.add(records, sync.records.len() as u64);
            in_flight.push_back(end);
            sent_upto = end;
        }
        stats.set_lag(local_leo - peer_leo);
        let idle = in_flight.is_empty() && sent_upto >= local_leo;
        if idle && idle_sync_at.is_none_or(|at| at.elapsed() >= IDLE_SYNC_EVERY) {
            let sync = SyncRecords {
                hw: local_leo,
                leo: local_leo,
                records: Bytes::new(),
            };
            correlation = correlation.wrapping_add(1);
            writer
                .write_all(&sync.encode_head(mine.sync, correlation, &client_id)?)
                .await?;
            idle_sync_at = Some(tokio::time::Instant::now());
        }
        tokio::select! {
            reason = &mut stop => return Ok(Ended::Stopped(reason)),
            changed = local.changed() => {
                if changed.is_err() {
                    return Ok(Ended::Stopped("the partition was removed".into()));
                }
            }
            frame = frames.next() => {
                peer_leo = read_offsets(&frame?.ok_or(LinkError::Closed)?, theirs)?;
                stats.seen();
                while in_flight.front().is_some_and(|end| *end <= peer_leo) {
                    in_flight.pop_front();
                }
                if in_flight.is_empty() {
                    // Everything sent is answered: go on from where the
                    // receiver says it is (it may have lost an unsynced tail).
                    sent_upto = peer_leo;
                }
                handles.pairing.set(&link.mirror, MirrorPairStatus::Successful);
            }
            () = tokio::time::sleep(STALLED_AFTER), if !in_flight.is_empty() => {
                warn!(peer = %link.peer, peer_leo, sent_upto, "mirror syncs unanswered: sending again from the receiver's log end");
                in_flight.clear();
                sent_upto = peer_leo;
            }
        }
    }
}

fn read_offsets(frame: &Bytes, theirs: Keys) -> Result<i64, LinkError> {
    let (header, start) = RequestHeader::parse(frame)?;
    if header.api_key != theirs.offsets {
        return Err(LinkError::UnexpectedKey {
            found: header.api_key,
            expected: theirs.offsets,
        });
    }
    let offsets: ReplicaOffsets = decode_body(frame, start, header.api_version, "mirror offsets")?;
    Ok(offsets.leo)
}

/// (first base offset, end offset, records) of stored batches, read from
/// their headers only (the receiver checks every CRC).
fn span(records: &[u8]) -> Option<(i64, i64, u64)> {
    let mut at = 0usize;
    let mut first = None;
    let mut end = 0i64;
    let mut count = 0u64;
    while records.len() >= at + 27 {
        let base = i64::from_be_bytes(records[at..at + 8].try_into().ok()?);
        let len = i32::from_be_bytes(records[at + 8..at + 12].try_into().ok()?);
        let delta = i32::from_be_bytes(records[at + 23..at + 27].try_into().ok()?);
        let len = usize::try_from(len).ok()?;
        first.get_or_insert(base);
        end = base + i64::from(delta) + 1;
        count += u64::try_from(i64::from(delta) + 1).unwrap_or(0);
        at += 12 + len;
    }
    first.map(|first| (first, end, count))
}

/// Marks a link's stats as connected while it lives.
struct Up<'a>(&'a Arc<LinkStats>);

impl<'a> Up<'a> {
    fn new(stats: &'a Arc<LinkStats>) -> Self {
        stats.set_connected(true);
        Self(stats)
    }
}

impl Drop for Up<'_> {
    fn drop(&mut self) {
        self.0.set_connected(false);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn span_reads_stored_batch_headers() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = mg_storage::PartitionLog::open(dir.path(), Default::default()).unwrap();
        log.append(&mg_testkit::batch_bytes(&[&[b"a", b"b"], &[b"c"]]))
            .unwrap();
        assert_eq!(
            super::span(&log.read(0, u64::MAX).unwrap()),
            Some((0, 3, 3))
        );
        assert_eq!(
            super::span(&log.read(2, u64::MAX).unwrap()),
            Some((2, 3, 1))
        );
        assert_eq!(super::span(&[]), None);
    }
}
