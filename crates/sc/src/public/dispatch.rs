//! Dispatch: one decoded admin request in, its answer out. Changes to the
//! metadata run on blocking threads (they sync files); lists are projected
//! from the cluster's state; a watch becomes a task of the connection.

use std::io::Cursor;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use fluvio_controlplane_metadata::mirror::{MirrorSpec, MirrorType};
use fluvio_controlplane_metadata::partition::PartitionSpec;
use fluvio_controlplane_metadata::spu::SpuSpec;
use fluvio_controlplane_metadata::topic::{MirrorConfig, ReplicaSpec, TopicSpec};
use fluvio_protocol::Encoder;
use fluvio_protocol::api::ApiMessage;
use fluvio_protocol::link::ErrorCode;
use fluvio_sc_schema::objects::{CreateRequest, DeleteRequest, ListRequest, WatchRequest};
use fluvio_sc_schema::{AdminPublicDecodedRequest, Status, TryEncodableFrom};
use mg_transport::encode_response;
use mg_wire::{ErrorCode as WireCode, write_api_versions};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, info_span};

use super::projection::{filter, list_response, mirrors, partitions, spus, topics};
use super::watch::{Kind, Watch};
use super::{PLATFORM_VERSION, PublicError, SERVED_VERSIONS, Writer, send};
use crate::cluster::Cluster;
use crate::error::{ApiError, ObjectKind};
use crate::model::HomeSpu;

pub(super) async fn handle(
    frame: &Bytes,
    cluster: &Arc<Cluster>,
    writer: &Writer,
    closed: &watch::Receiver<bool>,
    watches: &mut JoinSet<()>,
) -> Result<(), PublicError> {
    let request = AdminPublicDecodedRequest::decode_from(&mut Cursor::new(frame.as_ref()))
        .map_err(PublicError::Decode)?;
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
            Ok(send(writer, &out).await?)
        }
        AdminPublicDecodedRequest::CreateRequest(message) => {
            let (header, request) = (message.header.clone(), message.request);
            let cluster = Arc::clone(cluster);
            // Persisting syncs files: off the async workers.
            let status = tokio::task::spawn_blocking(move || create(&cluster, &request))
                .await
                .map_err(|err| PublicError::Internal(err.to_string()))??;
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
            let target =
                if let Some(request) = downcast::<DeleteRequest<TopicSpec>, _>(&message.request)? {
                    Some((ObjectKind::Topic, request.key()))
                } else {
                    downcast::<DeleteRequest<MirrorSpec>, _>(&message.request)?
                        .map(|request| (ObjectKind::Remote, request.key()))
                };
            let status = match target {
                Some((kind, name)) => {
                    let cluster = Arc::clone(cluster);
                    tokio::task::spawn_blocking(move || {
                        let result = match kind {
                            ObjectKind::Topic => cluster.delete_topic(&name),
                            _ => cluster.unregister_remote(&name),
                        };
                        status(&name, kind, result)
                    })
                    .await
                    .map_err(|err| PublicError::Internal(err.to_string()))?
                }
                None => Status::new(
                    String::new(),
                    ErrorCode::Other("unknown admin object type".into()),
                    None,
                ),
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
                return Err(PublicError::Unsupported(
                    "list of an unsupported object type",
                ));
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
                return Err(PublicError::Unsupported(
                    "watch of an unsupported object type",
                ));
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
        // Taken over by the connection loop before dispatch.
        AdminPublicDecodedRequest::MirroringRequest(_) => Err(PublicError::Internal(
            "a mirroring request reached dispatch".into(),
        )),
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
) -> Result<(), PublicError> {
    let bytes = encode_response(correlation, version, body)
        .map_err(|err| PublicError::Internal(err.to_string()))?;
    Ok(send(writer, &bytes).await?)
}

/// The status a change of `name` (a `kind` object) is answered with.
fn status(name: &str, kind: ObjectKind, result: Result<(), ApiError>) -> Status {
    match result {
        Ok(()) => Status::new_ok(name.to_string()),
        Err(err) => {
            let (code, message) = err.to_fluvio(kind, name);
            Status::new(name.to_string(), code, Some(message))
        }
    }
}

fn create(
    cluster: &Cluster,
    request: &fluvio_sc_schema::objects::ObjectApiCreateRequest,
) -> Result<Status, PublicError> {
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
                    _ => Err(ApiError::Invalid(
                        "a remote mirror topic names exactly one home SPU".into(),
                    )),
                }
            }
            ReplicaSpec::Assigned(_) => Err(ApiError::Invalid(
                "assigned replicas are not supported".into(),
            )),
        };
        return Ok(status(&name, ObjectKind::Topic, result));
    }
    if let Some(create) = downcast::<CreateRequest<MirrorSpec>, _>(request)? {
        let CreateRequest {
            common,
            request: spec,
        } = create;
        let name = common.name;
        let result = match spec.mirror_type {
            MirrorType::Remote(remote) => cluster.register_remote(&remote.id),
            MirrorType::Home(home) => cluster.connect_home(
                &home.id,
                &home.remote_id,
                &home.public_endpoint,
                home.client_tls.as_ref(),
            ),
        };
        return Ok(status(&name, ObjectKind::Remote, result));
    }
    Ok(Status::new(
        String::new(),
        ErrorCode::Other("unknown admin object type".into()),
        None,
    ))
}

fn downcast<T, R: TryEncodableFrom<T>>(request: &R) -> Result<Option<T>, PublicError> {
    request
        .downcast()
        .map_err(|err| PublicError::Malformed(err.to_string()))
}
