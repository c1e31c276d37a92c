//! Watches: each runs as a task of its connection and ends with it.

use std::sync::Arc;

use fluvio_protocol::{Decoder, Encoder};
use fluvio_sc_schema::objects::{Metadata, MetadataUpdate, ObjectApiWatchResponse, WatchResponse};
use fluvio_sc_schema::{AdminSpec, TryEncodableFrom};
use mg_transport::encode_response;
use tokio::sync::watch;
use tracing::{debug, warn};

use super::projection::{partitions, spus, topics};
use super::{PublicError, Writer, send};
use crate::cluster::Cluster;

/// The kinds a client may watch.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    Topic,
    Partition,
    Spu,
}

/// One watch: a full sync now, another whenever the kind changes, all
/// on the watch's correlation id.
pub(super) struct Watch {
    pub(super) kind: Kind,
    pub(super) correlation: i32,
    pub(super) version: i16,
    pub(super) cluster: Arc<Cluster>,
    pub(super) writer: Writer,
    pub(super) closed: watch::Receiver<bool>,
}

impl Watch {
    /// Sends a full sync now and another each time the kind's content
    /// changes, until the connection closes.
    pub(super) async fn run(mut self) {
        let mut changes = self.cluster.subscribe();
        let mut status = self.cluster.subscribe_status();
        let mut last: Option<Vec<u8>> = None;
        let mut epoch = 0i64;
        loop {
            // Only send when the content changed: compare encodings made
            // with a fixed epoch, then send one with the next epoch.
            let fingerprint = match self.encode(0) {
                Ok(bytes) => bytes,
                Err(err) => return warn!(%err, "watch encoding failed"),
            };
            if last.as_ref() != Some(&fingerprint) {
                epoch += 1;
                let body = match self.encode(epoch) {
                    Ok(bytes) => bytes,
                    Err(err) => return warn!(%err, "watch encoding failed"),
                };
                if let Err(err) = send(&self.writer, &body).await {
                    return debug!(%err, "watch ended");
                }
                last = Some(fingerprint);
            }
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return },
                changed = status.changed() => if changed.is_err() { return },
                _ = self.closed.changed() => return,
            }
        }
    }

    fn encode(&self, epoch: i64) -> Result<Vec<u8>, PublicError> {
        fn frame<S>(
            all: Vec<Metadata<S>>,
            epoch: i64,
            correlation: i32,
            version: i16,
        ) -> Result<Vec<u8>, PublicError>
        where
            S: AdminSpec,
            S::Status: Encoder + Decoder + std::fmt::Debug,
        {
            let update = WatchResponse::new(MetadataUpdate::with_all(epoch, all));
            let response = ObjectApiWatchResponse::try_encode_from(update, version)
                .map_err(|err| PublicError::Internal(err.to_string()))?;
            encode_response(correlation, version, &response)
                .map(|b| b.to_vec())
                .map_err(|err| PublicError::Internal(err.to_string()))
        }
        match self.kind {
            Kind::Topic => frame(topics(&self.cluster), epoch, self.correlation, self.version),
            Kind::Partition => frame(
                partitions(&self.cluster),
                epoch,
                self.correlation,
                self.version,
            ),
            Kind::Spu => frame(spus(&self.cluster), epoch, self.correlation, self.version),
        }
    }
}
