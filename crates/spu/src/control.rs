//! The SPU's side of the control plane: the connection to the SC.
//!
//! ```text
//! connect -> RegisterSpu -> (UpdateReplica | UpdateSpu | UpdateMirror)* from the SC
//!                        \-> every 400 ms: UpdateLrs, UpdatePartitionStat, UpdateMirrorStat
//! ```
//!
//! Replica pushes go into the role table, so a role change applies to the
//! very next produce request. While the SC is unreachable the SPU keeps
//! serving with its last table (a partition it does not know is refused as
//! not-leader) and reconnects with backoff. The first replica push of every
//! session is taken as a full sync, whatever its epoch and even if empty:
//! a restarted SC may count epochs afresh, and an SC with no partitions
//! sends nothing else to say so.
//!
//! Mirror direction flags exist on the wire only from UpdateReplica v18. A
//! push below v18 cannot say whether a remote partition is the target of a
//! home-to-remote topic, so such a role is taken as a target: produce is
//! refused rather than risked (fail closed).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fluvio_controlplane_metadata::partition::{PartitionMirrorConfig, ReplicaStatus};
use fluvio_protocol::record::ReplicaKey;
use futures_util::StreamExt;
use mg_controlplane::keys::UPDATE_REPLICA_VERSION;
use mg_controlplane::{
    FrameError as CpFrameError, LrsRequest, Message, MsgType, RegisterSpuRequest,
    RegisterSpuResponse, Replica, ScKey, SpuKey, SpuStat, UpdateLrsRequest, UpdateMirrorRequest,
    UpdateMirrorStatRequest, UpdatePartitionStatRequest, UpdateReplicaRequest, UpdateSpuRequest,
    decode_body, encode_request, parse_header,
};
use mg_roles::{ReplicaRole, RoleChange, RoleTable, RoleUpdate};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;
use tokio_util::codec::FramedRead;
use tracing::{debug, info, warn};

use crate::codec::FrameCodec;
use crate::server::Shared;

/// How often the SPU reports to the SC (also its heartbeat).
pub const STATUS_INTERVAL: Duration = Duration::from_millis(400);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(3);

/// Where the SPU stands with the SC, for observers (and tests) to await.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlState {
    /// Whether a session with the SC is up.
    pub connected: bool,
    /// Sessions established so far.
    pub sessions: u64,
    /// Replica updates applied so far.
    pub updates: u64,
    /// The SC's epoch of the last replica update applied.
    pub epoch: i64,
    /// The version the last replica update came at.
    pub replica_version: Option<i16>,
    /// Why the last session ended or failed, if it did.
    pub last_error: Option<String>,
}

/// Partitions written since the last status report.
#[derive(Debug, Default)]
/// Keyed by topic, so that marking looks the topic up by `&str`: no
/// allocation once a topic is present, no scan.
pub(crate) struct Dirty(Mutex<HashMap<String, HashSet<u32>>>);

impl Dirty {
    pub(crate) fn mark(&self, topic: &str, partition: u32) {
        let mut dirty = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match dirty.get_mut(topic) {
            Some(partitions) => {
                partitions.insert(partition);
            }
            None => {
                dirty.insert(topic.to_string(), HashSet::from([partition]));
            }
        }
    }

    fn take(&self) -> HashSet<(String, u32)> {
        let dirty = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        dirty
            .into_iter()
            .flat_map(|(topic, partitions)| partitions.into_iter().map(move |p| (topic.clone(), p)))
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("the SC refused registration: {0}")]
    Refused(String),
    #[error("the SC closed the connection")]
    Closed,
    #[error("protocol: {0}")]
    Protocol(String),
}

impl From<CpFrameError> for SessionError {
    fn from(err: CpFrameError) -> Self {
        SessionError::Protocol(err.to_string())
    }
}

/// Runs the control-plane connection until `stop` fires.
pub(crate) async fn run(
    sc: SocketAddr,
    spu_id: i32,
    roles: Arc<RoleTable>,
    shared: Arc<Shared>,
    state: watch::Sender<ControlState>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let session = Session {
            sc,
            spu_id,
            roles: &roles,
            shared: &shared,
            state: &state,
        };
        let result = tokio::select! {
            result = session.run() => result,
            _ = stop.changed() => return,
        };
        state.send_modify(|s| s.connected = false);
        match result {
            Ok(()) => backoff = MIN_BACKOFF,
            Err(err) => {
                match &err {
                    SessionError::Connect(_) => debug!(%sc, %err, "SC unreachable"),
                    _ => warn!(%sc, %err, "control-plane session ended"),
                }
                state.send_modify(|s| s.last_error = Some(err.to_string()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct Session<'a> {
    sc: SocketAddr,
    spu_id: i32,
    roles: &'a Arc<RoleTable>,
    shared: &'a Arc<Shared>,
    state: &'a watch::Sender<ControlState>,
}

impl Session<'_> {
    async fn run(self) -> Result<(), SessionError> {
        let stream = TcpStream::connect(self.sc)
            .await
            .map_err(SessionError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut frames = FramedRead::new(read, FrameCodec::new(self.shared.config.max_frame));

        let register_version = self.shared.config.register_version;
        let register = encode_request(
            ScKey::RegisterSpu.code(),
            register_version,
            &format!("spu: {}", self.spu_id),
            &RegisterSpuRequest { spu: self.spu_id },
        )?;
        write.write_all(&register).await?;
        let answer = frames
            .next()
            .await
            .ok_or(SessionError::Closed)?
            .map_err(frame_error)?;
        if answer.len() < 4 {
            return Err(SessionError::Protocol(
                "registration answer too short".into(),
            ));
        }
        let response: RegisterSpuResponse = decode_body(&answer, 4, register_version)?;
        if !response.error_code.is_ok() {
            let reason = response
                .error_message
                .unwrap_or_else(|| response.error_code.to_string());
            return Err(SessionError::Refused(reason));
        }
        info!(sc = %self.sc, spu = self.spu_id, "registered with the SC");
        self.state.send_modify(|s| {
            s.connected = true;
            s.sessions += 1;
            s.last_error = None;
        });

        // A new SC learns every led partition's offsets once.
        let mut report_all = true;
        let mut synced = false;
        let mut ticker = tokio::time::interval(STATUS_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                frame = frames.next() => {
                    let frame = frame.ok_or(SessionError::Closed)?.map_err(frame_error)?;
                    self.handle_push(&frame, &mut synced)?;
                }
                _ = ticker.tick() => {
                    self.report(&mut write, std::mem::take(&mut report_all)).await?;
                }
            }
        }
    }

    fn handle_push(&self, frame: &Bytes, synced: &mut bool) -> Result<(), SessionError> {
        let (header, body) = parse_header(frame)?;
        match SpuKey::from_code(header.api_key) {
            Some(SpuKey::UpdateReplica) => {
                let request: UpdateReplicaRequest = decode_body(frame, body, header.api_version)?;
                let knows_direction = header.api_version >= UPDATE_REPLICA_VERSION;
                let epoch = request.epoch;
                let role = |replica: Replica| to_role(replica, knows_direction);
                let first_of_session = !std::mem::replace(synced, true);
                let outcome = if first_of_session {
                    // The session's first push is its full sync (see module docs).
                    let mut all: Vec<ReplicaRole> =
                        request.all.into_iter().filter_map(role).collect();
                    for Message { header, content } in request.changes {
                        if header == MsgType::UPDATE
                            && let Some(r) = role(content)
                        {
                            all.push(r);
                        }
                    }
                    self.roles.resync(epoch, all)
                } else if !request.all.is_empty() {
                    self.roles.apply(RoleUpdate::Sync {
                        epoch,
                        all: request.all.into_iter().filter_map(role).collect(),
                    })
                } else {
                    let changes = request
                        .changes
                        .into_iter()
                        .map(|Message { header, content }| {
                            let key = content.id.clone();
                            match (header, role(content)) {
                                (MsgType::UPDATE, Some(r)) => RoleChange::Upsert(r),
                                _ => RoleChange::Remove {
                                    topic: key.topic,
                                    partition: key.partition,
                                },
                            }
                        })
                        .collect();
                    self.roles.apply(RoleUpdate::Changes { epoch, changes })
                };
                debug!(
                    epoch,
                    ?outcome,
                    version = header.api_version,
                    "applied replica update"
                );
                self.state.send_modify(|s| {
                    s.updates += 1;
                    s.epoch = self.roles.epoch();
                    s.replica_version = Some(header.api_version);
                });
                Ok(())
            }
            // Decoded to check them; the SPU has no use for them yet.
            Some(SpuKey::UpdateSpu) => {
                decode_body::<UpdateSpuRequest>(frame, body, header.api_version)
                    .map(drop)
                    .map_err(Into::into)
            }
            Some(SpuKey::UpdateMirror) => {
                decode_body::<UpdateMirrorRequest>(frame, body, header.api_version)
                    .map(drop)
                    .map_err(Into::into)
            }
            Some(SpuKey::UpdateSmartModule) => Ok(()),
            None => Err(SessionError::Protocol(format!(
                "unknown control-plane key {}",
                header.api_key
            ))),
        }
    }

    /// Sends the periodic status messages (also the SPU's heartbeat).
    async fn report(&self, write: &mut OwnedWriteHalf, all: bool) -> Result<(), SessionError> {
        let mut partitions = self.shared.dirty.take();
        if all {
            let snapshot = self.roles.snapshot();
            for topic in snapshot.topics() {
                for p in topic.partitions() {
                    partitions.insert((topic.name().to_string(), p.partition()));
                }
            }
        }
        let mut replicas = Vec::with_capacity(partitions.len());
        let snapshot = self.roles.snapshot();
        for (topic, partition) in partitions {
            if snapshot.get(&topic, partition).is_none() {
                continue; // no longer led here
            }
            let Ok(read) = self.shared.store.read(&topic, partition, i64::MAX, 0) else {
                continue;
            };
            replicas.push(LrsRequest {
                id: ReplicaKey::new(topic, partition),
                leader: ReplicaStatus::new(self.spu_id, read.high_watermark, read.high_watermark),
                replicas: Vec::new(),
                size: i64::try_from(read.size).unwrap_or(i64::MAX),
                base_offset: read.log_start,
            });
        }
        let lrs = UpdateLrsRequest {
            replicas,
            stat: SpuStat::default(),
        };
        let mut out = Vec::new();
        out.extend_from_slice(&encode_request(
            ScKey::UpdateLrs.code(),
            ScKey::UpdateLrs.default_version(),
            "dummy",
            &lrs,
        )?);
        out.extend_from_slice(&encode_request(
            ScKey::UpdatePartitionStat.code(),
            0,
            "dummy",
            &UpdatePartitionStatRequest::default(),
        )?);
        out.extend_from_slice(&encode_request(
            ScKey::UpdateMirrorStat.code(),
            0,
            "dummy",
            &UpdateMirrorStatRequest::default(),
        )?);
        write.write_all(&out).await?;
        Ok(())
    }
}

fn frame_error(err: crate::codec::FrameError) -> SessionError {
    match err {
        crate::codec::FrameError::Io(io) => SessionError::Io(io),
        crate::codec::FrameError::Size(wire) => SessionError::Protocol(wire.to_string()),
    }
}

/// The role table's view of a replica; `None` for one being deleted.
fn to_role(replica: Replica, knows_direction: bool) -> Option<ReplicaRole> {
    if replica.is_being_deleted {
        return None;
    }
    let mirror = replica.mirror.map(|mirror| match mirror {
        // Below v18 `target` was not on the wire: assume the restrictive role.
        PartitionMirrorConfig::Remote(mut remote) if !knows_direction => {
            remote.target = true;
            PartitionMirrorConfig::Remote(remote)
        }
        other => other,
    });
    Some(ReplicaRole {
        topic: replica.id.topic,
        partition: replica.id.partition,
        leader: replica.leader,
        mirror,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fluvio_controlplane_metadata::partition::{HomePartitionConfig, RemotePartitionConfig};

    fn replica(mirror: Option<PartitionMirrorConfig>, deleted: bool) -> Replica {
        Replica {
            id: ReplicaKey::new("t", 0u32),
            leader: 1,
            replicas: vec![1],
            mirror,
            is_being_deleted: deleted,
            ..Default::default()
        }
    }

    #[test]
    fn pre_v18_remote_roles_fail_closed() {
        let remote = Some(PartitionMirrorConfig::Remote(RemotePartitionConfig {
            target: false,
            ..Default::default()
        }));
        let old = to_role(replica(remote.clone(), false), false).unwrap();
        assert!(matches!(old.mirror, Some(PartitionMirrorConfig::Remote(r)) if r.target));
        let new = to_role(replica(remote, false), true).unwrap();
        assert!(matches!(new.mirror, Some(PartitionMirrorConfig::Remote(r)) if !r.target));
        // Home roles decoded below v18 already refuse produce (source = false).
        let home = Some(PartitionMirrorConfig::Home(HomePartitionConfig::default()));
        assert!(
            matches!(to_role(replica(home, false), false).unwrap().mirror, Some(PartitionMirrorConfig::Home(h)) if !h.source)
        );
        assert!(to_role(replica(None, true), true).is_none());
    }
}
