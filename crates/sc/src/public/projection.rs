//! Projection: the cluster's objects as Fluvio's metadata types, the way
//! the official client lists and watches them.

use fluvio_controlplane_metadata::mirror::MirrorSpec;
use fluvio_controlplane_metadata::partition::{
    PartitionResolution, PartitionSpec, PartitionStatus, ReplicaStatus,
};
use fluvio_controlplane_metadata::spu::{SpuSpec, SpuStatus};
use fluvio_controlplane_metadata::topic::{TopicResolution, TopicSpec, TopicStatus};
use fluvio_protocol::{Decoder, Encoder};
use fluvio_sc_schema::objects::{ListResponse, Metadata, ObjectApiListResponse};
use fluvio_sc_schema::{AdminSpec, TryEncodableFrom};

use super::PublicError;
use crate::cluster::Cluster;
use crate::model::{PartitionMirror, PartitionObject};

pub(super) fn filter<S>(
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

pub(super) fn list_response<S>(
    items: Vec<Metadata<S>>,
    version: i16,
) -> Result<ObjectApiListResponse, PublicError>
where
    S: AdminSpec,
    S::Status: Encoder + Decoder + std::fmt::Debug,
{
    ObjectApiListResponse::try_encode_from(ListResponse::new(items), version)
        .map_err(|err| PublicError::Internal(err.to_string()))
}

pub(super) fn topics(cluster: &Cluster) -> Vec<Metadata<TopicSpec>> {
    let partitions = cluster.partitions();
    cluster
        .topics()
        .into_iter()
        .map(|topic| {
            let mine: Vec<&PartitionObject> = partitions
                .iter()
                .filter(|p| p.topic == topic.name)
                .collect();
            let spec = topic.to_spec();
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

pub(super) fn partitions(cluster: &Cluster) -> Vec<Metadata<PartitionSpec>> {
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

pub(super) fn spus(cluster: &Cluster) -> Vec<Metadata<SpuSpec>> {
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

pub(super) fn mirrors(cluster: &Cluster) -> Vec<Metadata<MirrorSpec>> {
    cluster
        .mirrors()
        .1
        .into_iter()
        .map(|m| Metadata {
            name: m.name.clone(),
            spec: m.to_wire().spec,
            status: cluster.mirror_status(&m.name),
        })
        .collect()
}
