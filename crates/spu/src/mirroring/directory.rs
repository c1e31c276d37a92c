//! The mirror objects the SC pushes (UpdateMirror, 1004): on a home, the
//! remotes that may connect; on a remote, the home it mirrors with. The
//! control plane keeps them here; mirror links read them, and end when the
//! object they stand on goes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use fluvio_controlplane_metadata::mirror::{
    ConnectionStatus, Home, MirrorPairStatus, MirrorStatus, MirrorType,
};
use mg_controlplane::{Message, MirrorStatRequest, MsgType, UpdateMirrorRequest};

/// The mirror objects this SPU knows, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MirrorDirectory {
    objects: BTreeMap<String, MirrorType>,
}

impl MirrorDirectory {
    /// The directory after `request`: a full sync replaces it (the SC
    /// always sends mirrors that way; an empty one means none are left),
    /// changes update or delete by name.
    pub fn applied(&self, request: UpdateMirrorRequest) -> Self {
        if request.changes.is_empty() {
            let objects = request
                .all
                .into_iter()
                .map(|mirror| (mirror.name, mirror.spec.mirror_type))
                .collect();
            return Self { objects };
        }
        let mut next = self.clone();
        for Message { header, content } in request.changes {
            match header {
                MsgType::UPDATE => {
                    next.objects.insert(content.name, content.spec.mirror_type);
                }
                MsgType::DELETE => {
                    next.objects.remove(&content.name);
                }
            }
        }
        next
    }

    /// Whether `remote` is registered here (this SPU is on its home).
    pub fn is_registered(&self, remote: &str) -> bool {
        self.objects
            .values()
            .any(|mirror| matches!(mirror, MirrorType::Remote(r) if r.id == remote))
    }

    /// The home called `home_cluster`, if this cluster mirrors with it.
    pub fn home(&self, home_cluster: &str) -> Option<&Home> {
        self.objects.values().find_map(|mirror| match mirror {
            MirrorType::Home(home) if home.id == home_cluster => Some(home),
            _ => None,
        })
    }
}

/// Shared: the control plane writes, links watch.
pub type SharedDirectory = tokio::sync::watch::Sender<Arc<MirrorDirectory>>;

/// Each mirror's pairing as this SPU sees it, reported to the SC with
/// UpdateMirrorStat: keyed by the mirror object's id (the remote's id on a
/// home, the home's id on a remote).
#[derive(Debug, Default)]
pub struct Pairing {
    links: Mutex<BTreeMap<String, (MirrorPairStatus, u64)>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Pairing {
    /// Records a mirror's state, now.
    pub fn set(&self, mirror: &str, status: MirrorPairStatus) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.insert(mirror.to_string(), (status, now_ms()));
    }

    /// What UpdateMirrorStat carries.
    pub fn report(&self) -> Vec<MirrorStatRequest> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links
            .iter()
            .map(|(mirror, (status, seen))| {
                let mut stat = MirrorStatus::new_by_spu(status.clone(), *seen);
                stat.connection_status = if *status == MirrorPairStatus::Successful {
                    ConnectionStatus::Online
                } else {
                    ConnectionStatus::Offline
                };
                MirrorStatRequest {
                    mirror_id: mirror.clone(),
                    status: stat,
                }
            })
            .collect()
    }
}
