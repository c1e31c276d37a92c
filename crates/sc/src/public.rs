//! The SC's public port: the subset of Fluvio 0.50's SC API the official
//! client uses, with `fluvio-sc-schema` 0.50.1's own types.
//!
//! ```text
//! ApiVersions (18)
//! Create (1001)  Topic (computed, or a home mirror topic), Mirror (a remote)
//! Delete (1002)  Topic, Mirror
//! List   (1003)  Topic, Partition, SPU, Mirror
//! Watch  (1004)  Topic, Partition, SPU: a full sync now, another whenever
//!                the kind changes, all on the watch's correlation id
//! ```
//!
//! Anything else closes the connection with a logged reason.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fluvio_controlplane_metadata::mirror::{MirrorSpec, MirrorStatus, MirrorType};
use fluvio_controlplane_metadata::partition::{
    PartitionResolution, PartitionSpec, PartitionStatus, ReplicaStatus,
};
use fluvio_controlplane_metadata::spu::{SpuSpec, SpuStatus};
use fluvio_controlplane_metadata::topic::{
    HomeMirrorConfig, MirrorConfig, RemoteMirrorConfig, ReplicaSpec, SpuMirrorConfig,
    TopicResolution, TopicSpec, TopicStatus,
};
use fluvio_protocol::api::ApiMessage;
use fluvio_protocol::link::ErrorCode;
use fluvio_protocol::{Decoder, Encoder};
use fluvio_sc_schema::objects::{
    CreateRequest, DeleteRequest, ListRequest, ListResponse, Metadata, MetadataUpdate,
    ObjectApiListResponse, ObjectApiWatchResponse, WatchRequest, WatchResponse,
};
use fluvio_sc_schema::{AdminPublicDecodedRequest, AdminSpec, Status, TryEncodableFrom};
use mg_transport::{
    FrameLimits, FrameReader, ServerLimits, Shutdown, ShutdownSignal, encode_response,
};
use mg_wire::{ApiVersionKey, ErrorCode as WireCode, write_api_versions};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cluster::{AdminError, Cluster};
use crate::model::{HomeSpu, PartitionMirror, PartitionObject, TopicReplicas};

/// The Fluvio platform version this SC speaks (0.50.1's platform).
pub const PLATFORM_VERSION: &str = "0.18.1";
/// Admin requests are small: 16 MiB is far above any, and a frame that
/// stalls half-sent for 30 s is dropped.
const FRAME_LIMITS: FrameLimits = FrameLimits {
    max_frame: 16 << 20,
    read_timeout: std::time::Duration::from_secs(30),
};

/// What the SC advertises: the rows Fluvio's SC advertises.
pub const SERVED_VERSIONS: [ApiVersionKey; 6] = [
    ApiVersionKey {
        api_key: 1001,
        min_version: 9,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1002,
        min_version: 1,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1003,
        min_version: 15,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1004,
        min_version: 15,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1005,
        min_version: 14,
        max_version: 19,
    },
    ApiVersionKey {
        api_key: 1006,
        min_version: 1,
        max_version: 19,
    },
];

type Writer = Arc<Mutex<OwnedWriteHalf>>;

/// A running public server.
#[derive(Debug)]
pub struct RunningPublic {
    addr: SocketAddr,
    shutdown: Shutdown,
    task: JoinHandle<()>,
}

impl RunningPublic {
    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening and closes every connection (after the request in
    /// hand).
    pub async fn shutdown(self) {
        self.shutdown.trigger();
        let _ = self.task.await;
    }
}

/// Serves the public API on `listen`.
pub async fn serve_public(
    listen: SocketAddr,
    cluster: Arc<Cluster>,
) -> std::io::Result<RunningPublic> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (shutdown, signal) = Shutdown::new();
    let serving = mg_transport::serve(
        listener,
        ServerLimits::default(),
        signal,
        (),
        move |socket, _peer, stop| serve_client(socket, cluster.clone(), stop),
    );
    let task = tokio::spawn(serving.instrument(info_span!("sc public", %addr)));
    info!(%addr, "SC public port listening");
    Ok(RunningPublic {
        addr,
        shutdown,
        task,
    })
}

async fn serve_client(socket: TcpStream, cluster: Arc<Cluster>, mut stop: ShutdownSignal) {
    let (read, write) = socket.into_split();
    let writer: Writer = Arc::new(Mutex::new(write));
    let mut frames = FrameReader::new(read, FRAME_LIMITS);
    // Closing the connection ends its watches.
    let (closed_tx, closed) = watch::channel(false);
    let mut watches = JoinSet::new();
    loop {
        let frame = tokio::select! {
            frame = frames.next() => frame,
            () = stop.wait() => break,
        };
        let frame = match frame {
            Ok(None) => break,
            Ok(Some(frame)) => frame,
            Err(err) => {
                warn!(reason = %err, "closing connection");
                break;
            }
        };
        if let Err(reason) = handle(&frame, &cluster, &writer, &closed, &mut watches).await {
            warn!(%reason, "closing connection");
            break;
        }
    }
    let _ = closed_tx.send(true);
    while watches.join_next().await.is_some() {}
}

async fn send(writer: &Writer, bytes: &[u8]) -> std::io::Result<()> {
    writer.lock().await.write_all(bytes).await
}

async fn handle(
    frame: &Bytes,
    cluster: &Arc<Cluster>,
    writer: &Writer,
    closed: &watch::Receiver<bool>,
    watches: &mut JoinSet<()>,
) -> Result<(), String> {
    let request = AdminPublicDecodedRequest::decode_from(&mut Cursor::new(frame.as_ref()))
        .map_err(|e| e.to_string())?;
    match request {
        AdminPublicDecodedRequest::ApiVersionsRequest(message) => {
            let mut out = BytesMut::new();
            write_api_versions(
                &mut out,
                message.header.correlation_id(),
                WireCode::None,
                &SERVED_VERSIONS,
                PLATFORM_VERSION,
            );
            send(writer, &out).await.map_err(|e| e.to_string())
        }
        AdminPublicDecodedRequest::CreateRequest(message) => {
            let (header, request) = (message.header.clone(), message.request);
            let status = create(cluster, &request)?;
            respond(
                writer,
                header.correlation_id(),
                header.api_version(),
                &status,
            )
            .await
        }
        AdminPublicDecodedRequest::DeleteRequest(message) => {
            let version = message.header.api_version();
            let status =
                if let Some(request) = downcast::<DeleteRequest<TopicSpec>, _>(&message.request)? {
                    let name = request.key();
                    status(
                        &name,
                        cluster
                            .delete_topic(&name)
                            .map_err(|e| topic_error(&name, e)),
                    )
                } else if let Some(request) =
                    downcast::<DeleteRequest<MirrorSpec>, _>(&message.request)?
                {
                    let name = request.key();
                    status(
                        &name,
                        cluster
                            .unregister_remote(&name)
                            .map_err(|e| mirror_error(&name, e)),
                    )
                } else {
                    Status::new(
                        String::new(),
                        ErrorCode::Other("unknown admin object type".into()),
                        None,
                    )
                };
            respond(writer, message.header.correlation_id(), version, &status).await
        }
        AdminPublicDecodedRequest::ListRequest(message) => {
            let (correlation, version) = (
                message.header.correlation_id(),
                message.header.api_version(),
            );
            let request = &message.request;
            let response = if let Some(list) = downcast::<ListRequest<TopicSpec>, _>(request)? {
                list_response(filter(topics(cluster), &list.name_filters), version)?
            } else if let Some(list) = downcast::<ListRequest<PartitionSpec>, _>(request)? {
                list_response(filter(partitions(cluster), &list.name_filters), version)?
            } else if let Some(list) = downcast::<ListRequest<SpuSpec>, _>(request)? {
                list_response(filter(spus(cluster), &list.name_filters), version)?
            } else if let Some(list) = downcast::<ListRequest<MirrorSpec>, _>(request)? {
                list_response(filter(mirrors(cluster), &list.name_filters), version)?
            } else {
                // Kinds this SC has none of (SmartModule, SpuGroup, ...): an
                // unknown label cannot be answered in its own type.
                return Err("list of an unsupported object type".into());
            };
            respond(writer, correlation, version, &response).await
        }
        AdminPublicDecodedRequest::WatchRequest(message) => {
            let (correlation, version) = (
                message.header.correlation_id(),
                message.header.api_version(),
            );
            let request = &message.request;
            let kind = if downcast::<WatchRequest<TopicSpec>, _>(request)?.is_some() {
                Kind::Topic
            } else if downcast::<WatchRequest<PartitionSpec>, _>(request)?.is_some() {
                Kind::Partition
            } else if downcast::<WatchRequest<SpuSpec>, _>(request)?.is_some() {
                Kind::Spu
            } else {
                return Err("watch of an unsupported object type".into());
            };
            let watch = Watch {
                kind,
                correlation,
                version,
                cluster: cluster.clone(),
                writer: writer.clone(),
                closed: closed.clone(),
            };
            watches.spawn(
                watch
                    .run()
                    .instrument(info_span!("watch", ?kind, correlation)),
            );
            Ok(())
        }
        AdminPublicDecodedRequest::MirroringRequest(_) => {
            Err("mirroring connections are not served yet".into())
        }
        AdminPublicDecodedRequest::UpdateRequest(message) => {
            let status = Status::new(
                String::new(),
                ErrorCode::Other("topic update is not supported by this SC".into()),
                None,
            );
            respond(
                writer,
                message.header.correlation_id(),
                message.header.api_version(),
                &status,
            )
            .await
        }
    }
}

async fn respond<T: Encoder>(
    writer: &Writer,
    correlation: i32,
    version: i16,
    body: &T,
) -> Result<(), String> {
    let bytes = encode_response(correlation, version, body).map_err(|e| e.to_string())?;
    send(writer, &bytes).await.map_err(|e| e.to_string())
}

fn status(name: &str, result: Result<(), (ErrorCode, String)>) -> Status {
    match result {
        Ok(()) => Status::new_ok(name.to_string()),
        Err((code, message)) => Status::new(name.to_string(), code, Some(message)),
    }
}

fn topic_error(name: &str, err: AdminError) -> (ErrorCode, String) {
    match err {
        AdminError::Exists { .. } => (
            ErrorCode::TopicAlreadyExists,
            format!("Topic '{name}' already exists"),
        ),
        AdminError::NotFound { kind: "topic", .. } => (
            ErrorCode::TopicNotFound,
            format!("Topic '{name}' not found"),
        ),
        AdminError::NotFound { kind, name } => (
            ErrorCode::MirrorNotFound,
            format!("{kind} not found: {name}"),
        ),
        AdminError::Invalid(reason) => (ErrorCode::TopicError, reason),
        AdminError::Io(err) => (ErrorCode::TopicNotProvisioned, err.to_string()),
    }
}

fn mirror_error(name: &str, err: AdminError) -> (ErrorCode, String) {
    match err {
        AdminError::Exists { .. } => (
            ErrorCode::MirrorAlreadyExists,
            format!("remote cluster {name:?} already exists"),
        ),
        AdminError::NotFound { .. } => (
            ErrorCode::MirrorNotFound,
            format!("remote cluster {name:?} not found"),
        ),
        other => (ErrorCode::Other(other.to_string()), other.to_string()),
    }
}

fn create(
    cluster: &Cluster,
    request: &fluvio_sc_schema::objects::ObjectApiCreateRequest,
) -> Result<Status, String> {
    if let Some(create) = downcast::<CreateRequest<TopicSpec>, _>(request)? {
        let CreateRequest {
            common,
            request: spec,
        } = create;
        let name = common.name;
        if common.dry_run {
            return Ok(Status::new_ok(name));
        }
        let result = match spec.replicas() {
            ReplicaSpec::Computed(param) => cluster.create_topic(&name, param.partitions),
            ReplicaSpec::Mirror(MirrorConfig::Home(home)) => {
                let remotes: Vec<String> = home
                    .partitions()
                    .iter()
                    .map(|p| p.remote_cluster.clone())
                    .collect();
                cluster.create_mirror_topic(&name, &remotes, home.source)
            }
            ReplicaSpec::Mirror(MirrorConfig::Remote(remote)) => {
                match remote.home_spus.as_slice() {
                    // Fluvio's home SC sends these over the mirroring connection;
                    // until that is served, they are created here directly.
                    [spu] => cluster.create_remote_mirror_topic(
                        &name,
                        &remote.home_cluster,
                        HomeSpu {
                            id: spu.id,
                            key: spu.key.clone(),
                            endpoint: spu.endpoint.clone(),
                        },
                        remote.target,
                    ),
                    _ => Err(AdminError::Invalid(
                        "a remote mirror topic names exactly one home SPU".into(),
                    )),
                }
            }
            ReplicaSpec::Assigned(_) => Err(AdminError::Invalid(
                "assigned replicas are not supported".into(),
            )),
        };
        return Ok(status(&name, result.map_err(|e| topic_error(&name, e))));
    }
    if let Some(create) = downcast::<CreateRequest<MirrorSpec>, _>(request)? {
        let CreateRequest {
            common,
            request: spec,
        } = create;
        let name = common.name;
        let result = match spec.mirror_type {
            MirrorType::Remote(remote) => cluster.register_remote(&remote.id),
            MirrorType::Home(home) => {
                cluster.connect_home(&home.id, &home.remote_id, &home.public_endpoint)
            }
        };
        return Ok(status(&name, result.map_err(|e| mirror_error(&name, e))));
    }
    Ok(Status::new(
        String::new(),
        ErrorCode::Other("unknown admin object type".into()),
        None,
    ))
}

fn filter<S>(
    items: Vec<Metadata<S>>,
    filters: &fluvio_sc_schema::objects::ListFilters,
) -> Vec<Metadata<S>>
where
    S: AdminSpec,
    S::Status: Encoder + Decoder,
{
    use fluvio_sc_schema::store::KeyFilter;
    // Fluvio's rule: no filter keeps everything, else any substring match.
    items
        .into_iter()
        .filter(|m| filters.filter(m.name.as_str()))
        .collect()
}

fn list_response<S>(items: Vec<Metadata<S>>, version: i16) -> Result<ObjectApiListResponse, String>
where
    S: AdminSpec,
    S::Status: Encoder + Decoder + std::fmt::Debug,
{
    ObjectApiListResponse::try_encode_from(ListResponse::new(items), version)
        .map_err(|e| e.to_string())
}

fn topics(cluster: &Cluster) -> Vec<Metadata<TopicSpec>> {
    let partitions = cluster.partitions();
    cluster
        .topics()
        .into_iter()
        .map(|topic| {
            let mine: Vec<&PartitionObject> = partitions
                .iter()
                .filter(|p| p.topic == topic.name)
                .collect();
            let spec = match &topic.replicas {
                TopicReplicas::Computed { partitions } => {
                    TopicSpec::new_computed(*partitions, 1, None)
                }
                TopicReplicas::MirrorHome {
                    remotes,
                    home_to_remote,
                } => {
                    let mut home = HomeMirrorConfig::from_simple(&topic.name, remotes.clone());
                    home.set_home_to_remote(*home_to_remote);
                    TopicSpec::new_mirror(MirrorConfig::Home(home))
                }
                TopicReplicas::MirrorRemote {
                    home_cluster,
                    home_spu,
                    target,
                } => TopicSpec::new_mirror(MirrorConfig::Remote(RemoteMirrorConfig {
                    home_cluster: home_cluster.clone(),
                    home_spus: vec![SpuMirrorConfig {
                        id: home_spu.id,
                        key: home_spu.key.clone(),
                        endpoint: home_spu.endpoint.clone(),
                    }],
                    target: *target,
                })),
            };
            let mut status = TopicStatus::new(
                TopicResolution::Provisioned,
                mine.iter().map(|p| vec![p.leader]).collect(),
                "",
            );
            status.mirror_map = mine
                .iter()
                .filter_map(|p| Some((p.partition, p.mirror.as_ref()?.to_config())))
                .collect();
            Metadata {
                name: topic.name.clone(),
                spec,
                status,
            }
        })
        .collect()
}

fn partitions(cluster: &Cluster) -> Vec<Metadata<PartitionSpec>> {
    cluster
        .partitions()
        .into_iter()
        .map(|p| {
            let mut spec = PartitionSpec::new(p.leader, vec![p.leader]);
            spec.mirror = p.mirror.as_ref().map(PartitionMirror::to_config);
            let (hw, leo, size) = cluster.offsets(&p.topic, p.partition).unwrap_or((0, 0, 0));
            let resolution = if cluster.is_online(p.leader) {
                PartitionResolution::Online
            } else {
                PartitionResolution::LeaderOffline
            };
            let status = PartitionStatus::new2(
                ReplicaStatus::new(p.leader, hw, leo),
                Vec::new(),
                size,
                resolution,
                0,
            );
            Metadata {
                name: format!("{}-{}", p.topic, p.partition),
                spec,
                status,
            }
        })
        .collect()
}

fn spus(cluster: &Cluster) -> Vec<Metadata<SpuSpec>> {
    cluster
        .spus()
        .1
        .into_iter()
        .map(|spu| {
            let mut status = SpuStatus::default();
            if cluster.is_online(spu.id) {
                status.set_online();
            } else {
                status.set_offline();
            }
            Metadata {
                name: spu.id.to_string(),
                spec: spu.to_spec(),
                status,
            }
        })
        .collect()
}

fn mirrors(cluster: &Cluster) -> Vec<Metadata<MirrorSpec>> {
    cluster
        .mirrors()
        .1
        .into_iter()
        .map(|m| Metadata {
            name: m.name.clone(),
            spec: m.to_wire().spec,
            status: MirrorStatus::default(),
        })
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Topic,
    Partition,
    Spu,
}

struct Watch {
    kind: Kind,
    correlation: i32,
    version: i16,
    cluster: Arc<Cluster>,
    writer: Writer,
    closed: watch::Receiver<bool>,
}

impl Watch {
    /// Sends a full sync now and another each time the kind's content
    /// changes, until the connection closes.
    async fn run(mut self) {
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

    fn encode(&self, epoch: i64) -> Result<Vec<u8>, String> {
        fn frame<S>(
            all: Vec<Metadata<S>>,
            epoch: i64,
            correlation: i32,
            version: i16,
        ) -> Result<Vec<u8>, String>
        where
            S: AdminSpec,
            S::Status: Encoder + Decoder + std::fmt::Debug,
        {
            let update = WatchResponse::new(MetadataUpdate::with_all(epoch, all));
            let response = ObjectApiWatchResponse::try_encode_from(update, version)
                .map_err(|e| e.to_string())?;
            encode_response(correlation, version, &response)
                .map(|b| b.to_vec())
                .map_err(|e| e.to_string())
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

/// The request as a `T`, if that is the type it carries.
fn downcast<T, R: TryEncodableFrom<T>>(request: &R) -> Result<Option<T>, String> {
    request.downcast().map_err(|e| e.to_string())
}
