//! The objects the SC keeps, as they are persisted (serde, JSON), and their
//! forms on the control-plane wire.

use fluvio_controlplane_metadata::mirror::{Home, MirrorSpec, MirrorType, Remote};
use fluvio_controlplane_metadata::partition::{
    HomePartitionConfig, PartitionMirrorConfig, RemotePartitionConfig,
};
use fluvio_controlplane_metadata::spu::{Endpoint, IngressAddr, IngressPort, SpuSpec};
use fluvio_controlplane_metadata::topic::{
    HomeMirrorConfig, MirrorConfig, RemoteMirrorConfig, SpuMirrorConfig, TopicSpec,
};
use fluvio_protocol::record::ReplicaKey;
use mg_controlplane::operate::MirrorControl;
use mg_controlplane::{Mirror, Replica};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::Object;

/// An SPU the SC knows; SPUs must be known before they may register.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SpuObject {
    /// The SPU's id.
    pub id: i32,
    /// Where clients reach it, `host:port`.
    pub public_endpoint: String,
    /// Where the SC and other SPUs reach it, `host:port`.
    pub private_endpoint: String,
    /// Rack, for placement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
    /// Fields this binary does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Object for SpuObject {
    const KIND: &'static str = "spu";
    const SCHEMA: u32 = 1;
    fn name(&self) -> String {
        self.id.to_string()
    }
}

fn split_endpoint(endpoint: &str) -> (String, u16) {
    match endpoint.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), port.parse().unwrap_or(0)),
        None => (endpoint.to_string(), 0),
    }
}

impl SpuObject {
    /// The SPU as the control plane and clients see it.
    pub fn to_spec(&self) -> SpuSpec {
        let (public_host, public_port) = split_endpoint(&self.public_endpoint);
        let (private_host, private_port) = split_endpoint(&self.private_endpoint);
        SpuSpec {
            id: self.id,
            public_endpoint: IngressPort {
                port: public_port,
                ingress: vec![IngressAddr::from_host(public_host)],
                ..Default::default()
            },
            private_endpoint: Endpoint {
                port: private_port,
                host: private_host,
                ..Default::default()
            },
            rack: self.rack.clone(),
            ..Default::default()
        }
    }
}

/// A topic: computed (plain) or a mirror topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TopicObject {
    /// The topic's name.
    pub name: String,
    /// How its partitions come about.
    pub replicas: TopicReplicas,
    /// Being deleted: hidden, its name taken, until the leaders of its
    /// partitions confirm that their records are gone.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// Fields this binary does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// How a topic's partitions come about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum TopicReplicas {
    /// A plain topic of `partitions` partitions, placed by the SC.
    Computed {
        /// Partition count.
        partitions: u32,
    },
    /// The home side of a mirror topic: one partition per remote.
    MirrorHome {
        /// The remotes, in partition order.
        remotes: Vec<String>,
        /// Home-to-remote: home is the source and may be produced to.
        #[serde(default)]
        home_to_remote: bool,
    },
    /// The remote side of a mirror topic: one partition, mirrored with home.
    MirrorRemote {
        /// The home cluster.
        home_cluster: String,
        /// The home SPU leading the home partition.
        home_spu: HomeSpu,
        /// Home-to-remote: this remote is the target and refuses produce.
        #[serde(default)]
        target: bool,
    },
}

impl TopicObject {
    /// The topic as Fluvio's clients (and a remote's SC) see its spec.
    pub fn to_spec(&self) -> TopicSpec {
        match &self.replicas {
            TopicReplicas::Computed { partitions } => TopicSpec::new_computed(*partitions, 1, None),
            TopicReplicas::MirrorHome {
                remotes,
                home_to_remote,
            } => {
                let mut home = HomeMirrorConfig::from_simple(&self.name, remotes.clone());
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
        }
    }
}

/// The home SPU a remote partition mirrors with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HomeSpu {
    /// Its id.
    pub id: i32,
    /// Its key (the SNI prefix for TLS).
    pub key: String,
    /// Its public endpoint.
    pub endpoint: String,
}

impl Object for TopicObject {
    const KIND: &'static str = "topic";
    /// 2: mirror topics record their direction (`home_to_remote`).
    const SCHEMA: u32 = 2;
    fn name(&self) -> String {
        self.name.clone()
    }
    fn migrate(schema: u32, spec: Value) -> Result<Self, String> {
        match schema {
            1 => serde_json::from_value::<v1::Topic>(spec)
                .map(Into::into)
                .map_err(|e| e.to_string()),
            other => Err(format!("no migration from schema {other}")),
        }
    }
}

/// A partition: where it lives and the mirror role it plays.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PartitionObject {
    /// Its topic.
    pub topic: String,
    /// Its index.
    pub partition: u32,
    /// The SPU leading it.
    pub leader: i32,
    /// Its mirror role (kept when mirroring ends, to say what it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<PartitionMirror>,
    /// Where its mirroring stands (an operator's doing, or the peer's).
    #[serde(default, skip_serializing_if = "MirrorState::is_active")]
    pub mirror_state: MirrorState,
    /// Its mirror epoch: raised by every change that must stop mirrored
    /// appends (the SPUs fence at it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mirror_epoch: u32,
    /// Being deleted: sent to the SPUs as such until its leader confirms.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
    /// Fields this binary does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A partition's mirror role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "kebab-case")]
pub enum PartitionMirror {
    /// The home side: data comes from the remote, unless `source`.
    Home {
        /// The remote cluster.
        remote_cluster: String,
        /// The remote's replica, `topic-0`.
        remote_replica: String,
        /// Home-to-remote: home is the source.
        #[serde(default)]
        source: bool,
    },
    /// The remote side: data goes home, unless `target`.
    Remote {
        /// The home cluster.
        home_cluster: String,
        /// The home SPU's key.
        home_spu_key: String,
        /// The home SPU's id.
        home_spu_id: i32,
        /// The home SPU's public endpoint.
        home_spu_endpoint: String,
        /// Home-to-remote: this remote is the target.
        #[serde(default)]
        target: bool,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// Where a mirror partition's mirroring stands.
///
/// The receiving side (the home for to-home topics, the remote for
/// home-to-remote ones) is paused, promoted or failed over by its
/// operator; the sending side learns of it from its peer and shows it as
/// `paused-by-peer` or `ended`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MirrorState {
    /// Mirroring.
    #[default]
    Active,
    /// Paused here (receiving side): the records wait at the sender.
    Paused,
    /// Paused by the receiving side (sending side): the records wait here.
    PausedByPeer,
    /// Promoted here once in sync: an ordinary writable partition now.
    Promoted,
    /// Failed over here at once: an ordinary writable partition now.
    FailedOver,
    /// The receiving side promoted or failed over its copy (sending side):
    /// nothing is sent any more, and nothing is failing.
    Ended,
}

impl MirrorState {
    /// Every state.
    pub const ALL: [MirrorState; 6] = [
        Self::Active,
        Self::Paused,
        Self::PausedByPeer,
        Self::Promoted,
        Self::FailedOver,
        Self::Ended,
    ];

    /// The state's name, as shown and as sent to a peer SC.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::PausedByPeer => "paused-by-peer",
            Self::Promoted => "promoted",
            Self::FailedOver => "failed-over",
            Self::Ended => "ended",
        }
    }

    /// The state of a name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Mirroring as usual.
    pub fn is_active(&self) -> bool {
        *self == Self::Active
    }

    /// No link runs for now.
    pub fn is_paused(self) -> bool {
        matches!(self, Self::Paused | Self::PausedByPeer)
    }

    /// Mirroring is over for good: the partition is an ordinary one.
    pub fn has_ended(self) -> bool {
        matches!(self, Self::Promoted | Self::FailedOver | Self::Ended)
    }
}

impl Object for PartitionObject {
    const KIND: &'static str = "partition";
    /// 2: mirror roles carry their direction flags (`source`, `target`).
    /// 3: mirror partitions carry their state and epoch; an older binary
    /// must not read a promoted partition as a mirror one and reopen it.
    const SCHEMA: u32 = 3;
    fn name(&self) -> String {
        format!("{}-{}", self.topic, self.partition)
    }
    fn migrate(schema: u32, spec: Value) -> Result<Self, String> {
        match schema {
            1 => serde_json::from_value::<v1::Partition>(spec)
                .map(Into::into)
                .map_err(|e| e.to_string()),
            // Schema 2 is schema 3 with every partition active at epoch 0.
            2 => serde_json::from_value::<Self>(spec)
                .map_err(|e| e.to_string())
                .and_then(|p| match (p.mirror_state, p.mirror_epoch) {
                    (MirrorState::Active, 0) => Ok(p),
                    _ => Err("schema 2 has no mirror state".to_string()),
                }),
            other => Err(format!("no migration from schema {other}")),
        }
    }
}

impl PartitionMirror {
    /// Fluvio's form of the role.
    pub fn to_config(&self) -> PartitionMirrorConfig {
        match self.clone() {
            PartitionMirror::Home {
                remote_cluster,
                remote_replica,
                source,
            } => PartitionMirrorConfig::Home(HomePartitionConfig {
                remote_cluster,
                remote_replica,
                source,
            }),
            PartitionMirror::Remote {
                home_cluster,
                home_spu_key,
                home_spu_id,
                home_spu_endpoint,
                target,
            } => PartitionMirrorConfig::Remote(RemotePartitionConfig {
                home_cluster,
                home_spu_key,
                home_spu_id,
                home_spu_endpoint,
                target,
            }),
        }
    }
}

impl PartitionObject {
    /// The partition as the control plane pushes it to SPUs: its role
    /// with its control (epoch, paused, ended). SPUs that read no controls
    /// are sent an ended role as none (see `private`).
    pub fn to_replica(&self) -> Replica {
        Replica {
            id: ReplicaKey::new(self.topic.clone(), self.partition),
            leader: self.leader,
            replicas: vec![self.leader],
            mirror: self.mirror.as_ref().map(PartitionMirror::to_config),
            is_being_deleted: self.deleting,
            control: MirrorControl {
                epoch: self.mirror_epoch,
                paused: self.mirror_state.is_paused(),
                ended: self.mirror_state.has_ended(),
            },
            ..Default::default()
        }
    }

    /// Whether this side receives the partition's records (and so is the
    /// side that pauses, promotes and fails it over).
    pub fn receives(&self) -> bool {
        match &self.mirror {
            Some(PartitionMirror::Home { source, .. }) => !source,
            Some(PartitionMirror::Remote { target, .. }) => *target,
            None => false,
        }
    }

    /// The other cluster of its mirroring: the remote (on a home), the
    /// home (on a remote).
    pub fn peer(&self) -> Option<&str> {
        match &self.mirror {
            Some(PartitionMirror::Home { remote_cluster, .. }) => Some(remote_cluster),
            Some(PartitionMirror::Remote { home_cluster, .. }) => Some(home_cluster),
            None => None,
        }
    }
}

/// A mirror object: a registered remote (on a home), or the home (on a remote).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MirrorObject {
    /// The object's name (the remote's or the home's id).
    pub name: String,
    /// What it is.
    pub kind: MirrorKind,
    /// Fields this binary does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// What a mirror object is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum MirrorKind {
    /// On a home: a remote that may connect.
    Remote {
        /// The remote's id.
        id: String,
    },
    /// On a remote: the home it connects to.
    Home {
        /// The home's id.
        id: String,
        /// This remote's id at the home.
        remote_id: String,
        /// The home SC's public endpoint.
        public_endpoint: String,
        /// Whether TLS material for the home is kept (in the SC's secrets,
        /// never in this object).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        tls: bool,
    },
}

impl Object for MirrorObject {
    const KIND: &'static str = "mirror";
    const SCHEMA: u32 = 1;
    fn name(&self) -> String {
        self.name.clone()
    }
}

impl MirrorObject {
    /// The object as the control plane pushes it.
    pub fn to_wire(&self) -> Mirror {
        let mirror_type = match self.kind.clone() {
            MirrorKind::Remote { id } => MirrorType::Remote(Remote { id }),
            MirrorKind::Home {
                id,
                remote_id,
                public_endpoint,
                ..
            } => MirrorType::Home(Home {
                id,
                remote_id,
                public_endpoint,
                client_tls: None,
            }),
        };
        Mirror {
            name: self.name.clone(),
            spec: MirrorSpec { mirror_type },
        }
    }
}

/// Schema 1, the layout before mirror direction existed (as Fluvio's mirror
/// configs before protocol v18): a home topic's remotes as a bare list, and
/// partition roles with no `source` / `target`. Everything schema 1 could
/// describe mirrors one way, to home, so the migration sets both flags false.
mod v1 {
    use serde::Deserialize;
    use serde_json::{Map, Value};

    #[derive(Deserialize)]
    pub(super) struct Topic {
        name: String,
        replicas: Replicas,
        #[serde(flatten)]
        extra: Map<String, Value>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Replicas {
        Computed { partitions: u32 },
        MirrorHome(Vec<String>),
    }

    impl From<Topic> for super::TopicObject {
        fn from(topic: Topic) -> Self {
            let replicas = match topic.replicas {
                Replicas::Computed { partitions } => super::TopicReplicas::Computed { partitions },
                Replicas::MirrorHome(remotes) => super::TopicReplicas::MirrorHome {
                    remotes,
                    home_to_remote: false,
                },
            };
            Self {
                name: topic.name,
                replicas,
                deleting: false,
                extra: topic.extra,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct Partition {
        topic: String,
        partition: u32,
        leader: i32,
        #[serde(default)]
        mirror: Option<Mirror>,
        #[serde(flatten)]
        extra: Map<String, Value>,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    enum Mirror {
        Home {
            remote_cluster: String,
            remote_replica: String,
        },
        Remote {
            home_cluster: String,
            home_spu_key: String,
            home_spu_id: i32,
            home_spu_endpoint: String,
        },
    }

    impl From<Partition> for super::PartitionObject {
        fn from(p: Partition) -> Self {
            let mirror = p.mirror.map(|mirror| match mirror {
                Mirror::Home {
                    remote_cluster,
                    remote_replica,
                } => super::PartitionMirror::Home {
                    remote_cluster,
                    remote_replica,
                    source: false,
                },
                Mirror::Remote {
                    home_cluster,
                    home_spu_key,
                    home_spu_id,
                    home_spu_endpoint,
                } => super::PartitionMirror::Remote {
                    home_cluster,
                    home_spu_key,
                    home_spu_id,
                    home_spu_endpoint,
                    target: false,
                },
            });
            Self {
                topic: p.topic,
                partition: p.partition,
                leader: p.leader,
                mirror,
                mirror_state: super::MirrorState::Active,
                mirror_epoch: 0,
                deleting: false,
                extra: p.extra,
            }
        }
    }
}
