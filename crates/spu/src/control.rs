//! The SPU's side of the control plane: the connection to the SC.
//!
//! ```text
//! dial -> RegisterSpu -> (UpdateReplica | UpdateSpu | UpdateMirror)* from the SC
//!                     \-> UpdateLrs, UpdatePartitionStat, UpdateMirrorStat: every 400 ms
//!                         (the heartbeat), and within 20 ms of a write or a newly
//!                         led partition
//! ```
//!
//! A partition the SC marks as being deleted (or deletes outright, or leaves
//! out of a full sync while this SPU led it) loses its records on this SPU
//! before the next push is read; for one it led and the SC marked, the SPU
//! then confirms with ReplicaRemoved (2002), and only that lets the SC
//! forget the topic. So a topic created again under the same name starts
//! empty at offset 0. Partition directories on disk that a full sync does not
//! list at all are moved aside into `orphaned/`, never served again.
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

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fluvio_controlplane_metadata::partition::{PartitionMirrorConfig, ReplicaStatus};
use fluvio_protocol::record::ReplicaKey;
use mg_controlplane::keys::{CORRELATION_ID, UPDATE_REPLICA_VERSION};
use mg_controlplane::operate::{
    MirrorControl, MirrorLinkReport, UPDATE_LRS_MIRROR_VERSION, UPDATE_REPLICA_CONTROL_VERSION,
};
use mg_controlplane::{
    LrsRequest, Message, MsgType, RegisterSpuRequest, RegisterSpuResponse, Replica,
    ReplicaRemovedRequest, ScKey, SpuKey, SpuStat, UpdateLrsRequest, UpdateMirrorRequest,
    UpdateMirrorStatRequest, UpdatePartitionStatRequest, UpdateReplicaRequest, UpdateSpuRequest,
};
use mg_roles::{ReplicaRole, RoleChange, RoleTable, RoleUpdate};
use mg_transport::{
    Backoff, BodyError, EncodeError, FrameError, FrameLimits, FrameReader, RequestHeader,
    ShutdownSignal, decode_body, dial, encode_request,
};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::changes::{Offsets, Unreported};
use crate::disk::Disk;
use crate::metrics::Metrics;
use crate::mirroring::{Controls, MirrorDirectory, Pairing};

/// What the control plane acts on.
#[derive(Debug)]
pub(crate) struct ControlHandles {
    pub(crate) roles: Arc<RoleTable>,
    pub(crate) disk: Disk,
    pub(crate) offsets: Arc<Offsets>,
    pub(crate) unreported: Arc<Unreported>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) mirrors: MirrorChannels,
}

/// What the control plane tells the mirror links, and hears from them.
#[derive(Debug, Clone)]
pub(crate) struct MirrorChannels {
    /// The mirror objects, as pushed by UpdateMirror.
    pub(crate) directory: Arc<watch::Sender<Arc<MirrorDirectory>>>,
    /// Bumped after every replica push is applied.
    pub(crate) roles_changed: Arc<watch::Sender<u64>>,
    /// Pairing, reported with UpdateMirrorStat.
    pub(crate) pairing: Arc<Pairing>,
    /// Mirror epochs and pauses (UpdateReplica v19), fenced here.
    pub(crate) controls: Arc<Controls>,
}

/// How often the SPU reports to the SC (also its heartbeat).
pub const STATUS_INTERVAL: Duration = Duration::from_millis(400);
/// How soon after a write or a new leader role the SC hears of it: long
/// enough to report a burst of writes once, short enough that `partition
/// list` follows the log.
pub const REPORT_DELAY: Duration = Duration::from_millis(20);
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

/// How the control client reaches the SC.
#[derive(Clone, Debug)]
pub(crate) struct ControlConfig {
    /// Every SC's private endpoint: one is active, the others stand by
    /// (they do not listen); sessions go round them.
    pub(crate) scs: Vec<SocketAddr>,
    pub(crate) spu_id: i32,
    pub(crate) limits: FrameLimits,
    /// RegisterSpu version: 1 declares that this SPU reads the mirror
    /// direction flags.
    pub(crate) register_version: i16,
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
    #[error("frame: {0}")]
    Frame(#[from] FrameError),
    #[error("header: {0}")]
    Header(#[from] mg_wire::WireError),
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("cannot encode a report: {0}")]
    Encode(#[from] EncodeError),
    #[error("unknown control-plane key {0}")]
    UnknownKey(u16),
}

/// Runs the control-plane connection until shutdown.
pub(crate) async fn run(
    config: ControlConfig,
    handles: ControlHandles,
    state: watch::Sender<ControlState>,
    mut shutdown: ShutdownSignal,
) {
    let ControlHandles {
        roles,
        disk,
        offsets,
        unreported,
        metrics,
        mirrors,
    } = handles;
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let mut first_sync_of_process = true;
    let mut turn = 0usize;
    loop {
        let sc = config.scs[turn % config.scs.len()];
        turn += 1;
        let session = Session {
            sc,
            config: &config,
            roles: &roles,
            disk: &disk,
            offsets: &offsets,
            unreported: &unreported,
            metrics: &metrics,
            mirrors: &mirrors,
            state: &state,
            controlled: false,
            first_sync_of_process: &mut first_sync_of_process,
        };
        let result = tokio::select! {
            result = session.run() => result,
            () = shutdown.wait() => return,
        };
        state.send_modify(|s| s.connected = false);
        match result {
            Ok(()) => backoff.reset(),
            Err(err) => {
                match &err {
                    SessionError::Connect(_) => debug!(%sc, %err, "SC unreachable"),
                    _ => warn!(%sc, %err, "control-plane session ended"),
                }
                state.send_modify(|s| s.last_error = Some(err.to_string()));
            }
        }
        // The next SC at once; a pause only once all were tried.
        if turn.is_multiple_of(config.scs.len()) && !backoff.wait(&mut shutdown).await {
            return;
        }
    }
}

struct Session<'a> {
    /// The SC this session dials.
    sc: SocketAddr,
    config: &'a ControlConfig,
    roles: &'a Arc<RoleTable>,
    disk: &'a Disk,
    offsets: &'a Offsets,
    unreported: &'a Unreported,
    metrics: &'a Metrics,
    mirrors: &'a MirrorChannels,
    state: &'a watch::Sender<ControlState>,
    first_sync_of_process: &'a mut bool,
    /// The SC pushed mirror controls (UpdateReplica v19) in this session:
    /// it is a mirror-guard SC, and reads link reports (UpdateLrs v2).
    controlled: bool,
}

/// The partitions led before a push, as much as the push needs.
#[derive(Debug)]
enum LedBefore {
    /// Every one (a full sync).
    All(HashSet<(String, u32)>),
    /// The partitions a change push names, and whether each was led.
    Changed(Vec<((String, u32), bool)>),
}

/// What a replica push did to the partitions this SPU leads.
#[derive(Debug, Default)]
struct Applied {
    /// Partitions whose records must go: deleted by the SC.
    removed: Vec<(String, u32)>,
    /// Of those, the ones this SPU leads that the SC marked as being
    /// deleted: it waits for their removal to be confirmed.
    confirm: Vec<(String, u32)>,
    /// A full sync's listing (every partition the SC knows), if it was one.
    listed: Option<Vec<(String, u32)>>,
    /// Mirror controls of led partitions (v19 pushes only), with the role
    /// each had: the fence is raised before the push counts as applied.
    controls: Vec<(String, u32, MirrorControl, Option<PartitionMirrorConfig>)>,
}

impl Session<'_> {
    async fn run(mut self) -> Result<(), SessionError> {
        let stream = dial(self.sc).await.map_err(SessionError::Connect)?;
        let (read, mut write) = stream.into_split();
        let mut frames = FrameReader::new(read, self.config.limits);

        let spu_id = self.config.spu_id;
        let register_version = self.config.register_version;
        let register = encode_request(
            ScKey::RegisterSpu.code(),
            register_version,
            CORRELATION_ID,
            &format!("spu: {spu_id}"),
            &RegisterSpuRequest { spu: spu_id },
        )?;
        write.write_all(&register).await?;
        let answer = frames.next().await?.ok_or(SessionError::Closed)?;
        if answer.len() < 4 {
            return Err(SessionError::Closed);
        }
        let response: RegisterSpuResponse =
            decode_body(&answer, 4, register_version, "RegisterSpu response")?;
        if !response.error_code.is_ok() {
            let reason = response
                .error_message
                .unwrap_or_else(|| response.error_code.to_string());
            return Err(SessionError::Refused(reason));
        }
        info!(sc = %self.sc, spu = spu_id, "registered with the SC");
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
        let mut report_at: Option<Instant> = None;
        loop {
            let report_soon = async {
                match report_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = frames.next() => {
                    let frame = frame?.ok_or(SessionError::Closed)?;
                    for (topic, partition) in self.handle_push(&frame, &mut synced).await? {
                        let removed = ReplicaRemovedRequest {
                            id: ReplicaKey::new(topic, partition),
                            confirm: true,
                        };
                        let frame = encode_request(
                            ScKey::ReplicaRemoved.code(),
                            0,
                            CORRELATION_ID,
                            "dummy",
                            &removed,
                        )?;
                        write.write_all(&frame).await?;
                    }
                }
                _ = ticker.tick() => {
                    self.report(&mut write, std::mem::take(&mut report_all)).await?;
                    report_at = None;
                }
                () = self.unreported.marked(), if report_at.is_none() => {
                    report_at = Some(Instant::now() + REPORT_DELAY);
                }
                () = report_soon => {
                    self.report(&mut write, false).await?;
                    report_at = None;
                }
            }
        }
    }

    /// Applies one push from the SC; returns the partitions whose removal
    /// the SC waits to hear of.
    async fn handle_push(
        &mut self,
        frame: &Bytes,
        synced: &mut bool,
    ) -> Result<Vec<(String, u32)>, SessionError> {
        let (header, body) = RequestHeader::parse(frame)?;
        let version = header.api_version;
        match SpuKey::from_code(header.api_key) {
            Some(SpuKey::UpdateReplica) => {
                let request: UpdateReplicaRequest =
                    decode_body(frame, body, version, "UpdateReplica")?;
                self.controlled |= version >= UPDATE_REPLICA_CONTROL_VERSION;
                let first_of_session = !std::mem::replace(synced, true);
                let before = self.led_before(&request, first_of_session);
                let applied = self.apply_replicas(request, version, first_of_session);
                let confirmed = self.settle(applied, before).await;
                self.mirrors.roles_changed.send_modify(|n| *n += 1);
                // Counted once its consequences (removals) are done.
                self.state.send_modify(|s| {
                    s.updates += 1;
                    s.epoch = self.roles.epoch();
                    s.replica_version = Some(version);
                });
                Ok(confirmed)
            }
            // Decoded to check them; the SPU has no use for them yet.
            Some(SpuKey::UpdateSpu) => {
                decode_body::<UpdateSpuRequest>(frame, body, version, "UpdateSpu")?;
                Ok(Vec::new())
            }
            Some(SpuKey::UpdateMirror) => {
                let request: UpdateMirrorRequest =
                    decode_body(frame, body, version, "UpdateMirror")?;
                self.mirrors
                    .directory
                    .send_modify(|directory| *directory = Arc::new(directory.applied(request)));
                Ok(Vec::new())
            }
            Some(SpuKey::UpdateSmartModule) => Ok(Vec::new()),
            None => Err(SessionError::UnknownKey(header.api_key)),
        }
    }

    /// What a push must know of the partitions led before it: all of
    /// them for a full sync (what it leaves out goes), else only whether
    /// each partition it changes was led, so that a change costs what it
    /// touches, not what the SPU leads.
    fn led_before(&self, request: &UpdateReplicaRequest, first_of_session: bool) -> LedBefore {
        if first_of_session || !request.all.is_empty() {
            return LedBefore::All(self.led());
        }
        let snapshot = self.roles.snapshot();
        LedBefore::Changed(
            request
                .changes
                .iter()
                .map(|change| {
                    let (topic, partition) =
                        (&change.content.id.topic, change.content.id.partition);
                    let was = snapshot.get(topic, partition).is_some();
                    ((topic.clone(), partition), was)
                })
                .collect(),
        )
    }

    /// The partitions this SPU leads now.
    fn led(&self) -> HashSet<(String, u32)> {
        let snapshot = self.roles.snapshot();
        snapshot
            .topics()
            .flat_map(|topic| {
                topic
                    .partitions()
                    .iter()
                    .map(move |p| (topic.name().to_string(), p.partition()))
            })
            .collect()
    }

    /// Applies a replica push to the role table.
    fn apply_replicas(
        &self,
        request: UpdateReplicaRequest,
        version: i16,
        first_of_session: bool,
    ) -> Applied {
        let knows_direction = version >= UPDATE_REPLICA_VERSION;
        let controlled = version >= UPDATE_REPLICA_CONTROL_VERSION;
        let epoch = request.epoch;
        let spu_id = self.config.spu_id;
        let mut controls = Vec::new();
        let mut role = |replica: Replica| {
            let mirrored = replica.mirror.is_some() || replica.control != MirrorControl::default();
            if controlled && mirrored && replica.leader == spu_id && !replica.is_being_deleted {
                controls.push((
                    replica.id.topic.clone(),
                    replica.id.partition,
                    replica.control,
                    replica.mirror.clone(),
                ));
            }
            to_role(replica, knows_direction)
        };
        let key = |replica: &Replica| (replica.id.topic.clone(), replica.id.partition);
        let mut applied = Applied::default();
        let outcome = if first_of_session || !request.all.is_empty() {
            // The session's first push is its full sync (see module docs).
            let mut listed: Vec<(String, u32)> = Vec::with_capacity(request.all.len());
            let mut all: Vec<ReplicaRole> = Vec::with_capacity(request.all.len());
            let updates = request
                .changes
                .into_iter()
                .filter_map(|Message { header, content }| {
                    (header == MsgType::UPDATE).then_some(content)
                });
            for replica in request.all.into_iter().chain(updates) {
                listed.push(key(&replica));
                if replica.is_being_deleted {
                    self.note_deleted(&replica, &mut applied);
                }
                if let Some(r) = role(replica) {
                    all.push(r);
                }
            }
            applied.listed = Some(listed);
            if first_of_session {
                self.roles.resync(epoch, all)
            } else {
                self.roles.apply(RoleUpdate::Sync { epoch, all })
            }
        } else {
            let changes = request
                .changes
                .into_iter()
                .map(|Message { header, content }| {
                    let (topic, partition) = key(&content);
                    if content.is_being_deleted {
                        self.note_deleted(&content, &mut applied);
                    } else if header == MsgType::DELETE {
                        applied.removed.push((topic.clone(), partition));
                    }
                    match (header, role(content)) {
                        (MsgType::UPDATE, Some(r)) => RoleChange::Upsert(r),
                        _ => RoleChange::Remove { topic, partition },
                    }
                })
                .collect();
            self.roles.apply(RoleUpdate::Changes { epoch, changes })
        };
        debug!(epoch, ?outcome, version, "applied replica update");
        applied.controls = controls;
        applied
    }

    /// Notes a replica the SC marked as being deleted: its records go, and
    /// if this SPU leads it, the SC waits for the confirmation.
    fn note_deleted(&self, replica: &Replica, applied: &mut Applied) {
        let key = (replica.id.topic.clone(), replica.id.partition);
        if replica.leader == self.config.spu_id {
            applied.confirm.push(key.clone());
        }
        applied.removed.push(key);
    }

    /// Acts on what a push changed: deleted partitions lose their records
    /// (awaited, so a topic created again by a later push starts empty),
    /// and newly led ones are reported to the SC at once, empty or not.
    async fn settle(&mut self, mut applied: Applied, before: LedBefore) -> Vec<(String, u32)> {
        let now = self.roles.snapshot_arc();
        let led_now = |topic: &str, partition: u32| now.get(topic, partition).is_some();
        if let (Some(listed), LedBefore::All(before)) = (&applied.listed, &before) {
            let listed: HashSet<&(String, u32)> = listed.iter().collect();
            applied
                .removed
                .extend(before.iter().filter(|k| !listed.contains(k)).cloned());
        }
        let mut confirmed = Vec::new();
        for (topic, partition) in &applied.removed {
            if led_now(topic, *partition) {
                continue; // deleted and led again within one push
            }
            self.offsets.forget(topic, *partition);
            match self.disk.remove(topic, *partition).await {
                Ok(()) => {
                    info!(topic, partition, "deleted by the SC: records removed");
                    let key = (topic.clone(), *partition);
                    if applied.confirm.contains(&key) {
                        confirmed.push(key);
                    }
                }
                // Not confirmed: the SC keeps the partition as being
                // deleted, and sends it again with the next full sync.
                Err(err) => warn!(topic, partition, %err, "could not remove a deleted partition"),
            }
        }
        if let Some(listed) = applied.listed
            && std::mem::take(self.first_sync_of_process)
        {
            // Directories left by partitions deleted while this SPU was away.
            if let Err(err) = self.disk.set_aside_unknown(listed).await
                && err.kind() != std::io::ErrorKind::Unsupported
            {
                warn!(%err, "could not set aside unknown partitions");
            }
        }
        match &before {
            LedBefore::All(before) => {
                for topic in now.topics() {
                    for role in topic.partitions() {
                        let key = (topic.name().to_string(), role.partition());
                        if !before.contains(&key) {
                            self.unreported.mark(&key.0, key.1);
                        }
                    }
                }
            }
            LedBefore::Changed(changed) => {
                for ((topic, partition), was) in changed {
                    if !was && led_now(topic, *partition) {
                        self.unreported.mark(topic, *partition);
                    }
                }
            }
        }
        self.fence(applied.controls, &led_now).await;
        confirmed
    }

    /// Records the pushed mirror controls and raises each log's fence to
    /// its epoch, awaited: once the SC hears the epoch back, no link of an
    /// older one appends to that partition again.
    async fn fence(
        &mut self,
        controls: Vec<(String, u32, MirrorControl, Option<PartitionMirrorConfig>)>,
        led: &impl Fn(&str, u32) -> bool,
    ) {
        let table = &self.mirrors.controls;
        table.retain(led);
        for (topic, partition, control, former) in controls {
            let Some(epoch) = table.set(&topic, partition, control, former) else {
                continue;
            };
            match self.disk.fence_mirror(&topic, partition, epoch).await {
                Ok(()) => {
                    table.fenced(&topic, partition, epoch);
                    info!(
                        topic,
                        partition,
                        epoch,
                        paused = control.paused,
                        ended = control.ended,
                        "mirror fence raised"
                    );
                    self.unreported.mark(&topic, partition);
                }
                // Not reported as fenced: the SC keeps waiting, and the
                // next push of the partition tries again.
                Err(err) => {
                    warn!(topic, partition, epoch, %err, "could not fence a mirror partition")
                }
            }
        }
    }

    /// Sends the status messages (also the SPU's heartbeat): the offsets of
    /// every partition not reported since it changed, or of all led ones.
    async fn report(&self, write: &mut OwnedWriteHalf, all: bool) -> Result<(), SessionError> {
        let mut partitions = self.unreported.take();
        if all {
            partitions.extend(self.led());
        }
        let controls = if self.controlled {
            self.mirrors.controls.all()
        } else {
            Vec::new()
        };
        // A mirror-guard SC hears of every mirror partition each time: the
        // fence it waits for, and the link's lag and state.
        partitions.extend(controls.iter().map(|(key, _)| key.clone()));
        let snapshot = self.roles.snapshot();
        // Only those still led here.
        let partitions: Vec<(String, u32)> = partitions
            .into_iter()
            .filter(|(topic, partition)| snapshot.get(topic, *partition).is_some())
            .collect();
        let mut replicas = Vec::with_capacity(partitions.len());
        for ((topic, partition), read) in self.disk.offsets(partitions).await {
            let Ok(read) = read else { continue };
            replicas.push(LrsRequest {
                leader: ReplicaStatus::new(
                    self.config.spu_id,
                    read.high_watermark,
                    read.high_watermark,
                ),
                replicas: Vec::new(),
                size: i64::try_from(read.size).unwrap_or(i64::MAX),
                base_offset: read.log_start,
                mirror: controls
                    .iter()
                    .find(|((t, p), _)| *t == topic && *p == partition)
                    .map(|(_, control)| self.link_report(&topic, partition, control.fenced)),
                id: ReplicaKey::new(topic, partition),
            });
        }
        let lrs = UpdateLrsRequest {
            replicas,
            stat: SpuStat::default(),
        };
        let lrs_version = if self.controlled {
            UPDATE_LRS_MIRROR_VERSION
        } else {
            ScKey::UpdateLrs.default_version()
        };
        let mut out = Vec::new();
        out.extend_from_slice(&encode_request(
            ScKey::UpdateLrs.code(),
            lrs_version,
            CORRELATION_ID,
            "dummy",
            &lrs,
        )?);
        out.extend_from_slice(&encode_request(
            ScKey::UpdatePartitionStat.code(),
            0,
            CORRELATION_ID,
            "dummy",
            &UpdatePartitionStatRequest::default(),
        )?);
        out.extend_from_slice(&encode_request(
            ScKey::UpdateMirrorStat.code(),
            0,
            CORRELATION_ID,
            "dummy",
            &UpdateMirrorStatRequest {
                stats: self.mirrors.pairing.report(),
            },
        )?);
        write.write_all(&out).await?;
        Ok(())
    }
}

impl Session<'_> {
    /// A led mirror partition's link, for the SC: the fence reached, and
    /// what this SPU's links of the partition counted.
    fn link_report(&self, topic: &str, partition: u32, fenced: u32) -> MirrorLinkReport {
        let mut report = MirrorLinkReport {
            epoch: fenced,
            lag: -1,
            ..Default::default()
        };
        for link in self.metrics.links_of(topic, partition) {
            if link.connected() || report.lag < 0 {
                report.lag = link.lag();
            }
            report.connected |= link.connected();
            report.records += link.records();
            report.bytes += link.bytes();
            report.refused += link.refused();
            report.last_seen_ms = report.last_seen_ms.max(link.last_seen_ms());
        }
        report
    }
}

/// The role table's view of a replica; `None` for one being deleted.
fn to_role(replica: Replica, knows_direction: bool) -> Option<ReplicaRole> {
    if replica.is_being_deleted {
        return None;
    }
    // Mirroring ended (promoted, failed over): an ordinary partition. The
    // role stays in the controls only, to name what the fence refuses.
    let mirror = replica.mirror.filter(|_| !replica.control.ended);
    let mirror = mirror.map(|mirror| match mirror {
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
