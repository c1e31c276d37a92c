//! The SC-to-SC mirroring stream on loopback, over mutual TLS, against the
//! oracle: requests encoded by Fluvio 0.50.1's own types, answers decoded
//! by them. And two real SCs: a remote keeps its copies of the home's
//! topics in step, and a client cannot delete them there.

mod common;

use std::sync::Arc;
use std::time::Duration;

use fluvio_controlplane_metadata::mirror::ClientTls;
use fluvio_controlplane_metadata::mirroring::{
    MirrorConnect, MirroringRemoteClusterRequest, MirroringStatusResponse,
};
use fluvio_controlplane_metadata::topic::{MirrorConfig, ReplicaSpec};
use fluvio_protocol::link::ErrorCode;
use fluvio_sc_schema::TryEncodableFrom;
use fluvio_sc_schema::mirroring::ObjectMirroringRequest;
use mg_sc::mirroring::MirroringAccess;
use mg_sc::{ApiError, Cluster, serve_public};
use mg_transport::tls::{TlsClient, TlsServer};
use mg_transport::{FrameLimits, FrameReader, Shutdown, decode_body, encode_request};
use tokio::io::{AsyncRead, AsyncWriteExt};

const VERSION: i16 = 19;

/// A home's CA and TLS directory, as `cluster start` makes them.
struct HomeTls {
    dir: tempfile::TempDir,
}

impl HomeTls {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        mg_pki::init_home(
            &dir.path().join("tls"),
            mg_pki::DEFAULT_DOMAIN,
            &["localhost", "127.0.0.1"],
        )
        .unwrap();
        Self { dir }
    }

    fn tls(&self) -> std::path::PathBuf {
        self.dir.path().join("tls")
    }

    /// Mirror traffic over mutual TLS only.
    fn access(&self) -> MirroringAccess {
        MirroringAccess {
            tls: Some(TlsServer::from_dir(&self.tls()).unwrap()),
            tls_dir: Some(self.tls()),
            ..Default::default()
        }
    }

    /// What `remote export` gives `remote`: a certificate, recorded.
    fn client_tls(&self, remote: &str) -> ClientTls {
        let ca = mg_pki::Ca::load(&self.tls()).unwrap();
        let issued = ca.issue_client(remote, mg_pki::DEFAULT_VALIDITY).unwrap();
        mg_pki::record_issued(&self.tls(), remote, &issued.fingerprint, false).unwrap();
        ClientTls {
            domain: mg_pki::DEFAULT_DOMAIN.into(),
            ca_cert: ca.cert_pem(),
            client_cert: issued.cert_pem,
            client_key: issued.key_pem,
        }
    }
}

fn home_cluster(store: &common::TestStore, dir: &std::path::Path) -> Arc<Cluster> {
    let cluster = store.open(dir);
    cluster
        .register_spu(5001, "127.0.0.1:31005", "127.0.0.1:31004")
        .unwrap();
    cluster.register_remote("edge1").unwrap();
    cluster.register_remote("edge2").unwrap();
    let remotes = ["edge1".to_string(), "edge2".to_string()];
    cluster
        .create_mirror_topic("metrics", &remotes, false)
        .unwrap();
    cluster
        .create_mirror_topic("config", &remotes[1..], true)
        .unwrap();
    cluster
}

/// Opens a MirrorConnect stream as `remote_id`, over TLS with a
/// certificate for it, encoded by the oracle, as our remote SC does (its
/// client id).
async fn connect(
    addr: std::net::SocketAddr,
    home: &HomeTls,
    remote_id: &str,
) -> FrameReader<impl AsyncRead + Unpin> {
    connect_as(addr, home, remote_id, mg_sc::mirroring::CLIENT_ID).await
}

async fn connect_as(
    addr: std::net::SocketAddr,
    home: &HomeTls,
    remote_id: &str,
    client_id: &str,
) -> FrameReader<impl AsyncRead + Unpin> {
    let tls = home.client_tls(remote_id);
    let client = TlsClient::from_pem(
        tls.ca_cert.as_bytes(),
        tls.client_cert.as_bytes(),
        tls.client_key.as_bytes(),
    )
    .unwrap();
    let stream = client
        .connect(&addr.to_string(), mg_pki::DEFAULT_DOMAIN)
        .await
        .unwrap();
    let (read, mut write) = tokio::io::split(stream);
    let request = ObjectMirroringRequest::try_encode_from(
        MirroringRemoteClusterRequest {
            request: MirrorConnect {
                remote_id: remote_id.into(),
            },
        },
        VERSION,
    )
    .unwrap();
    let frame = encode_request(1005, VERSION, 7, client_id, &request).unwrap();
    write.write_all(&frame).await.unwrap();
    // The write half stays open: a remote keeps its stream.
    std::mem::forget(write);
    FrameReader::new(read, FrameLimits::default())
}

/// The next streamed answer, decoded by the oracle; `None` once closed.
/// MirrorStates frames (sent to our own remote SC only) are skipped.
async fn next<R: AsyncRead + Unpin>(
    frames: &mut FrameReader<R>,
) -> Option<MirroringStatusResponse> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), frames.next())
            .await
            .expect("an answer or the end of the stream")
            .ok()??;
        let correlation = i32::from_be_bytes(frame[..4].try_into().unwrap());
        if correlation == mg_controlplane::operate::MIRROR_STATES_CORRELATION {
            let _: mg_controlplane::operate::MirrorStates =
                decode_body(&frame, 4, 0, "MirrorStates").unwrap();
            continue;
        }
        assert_eq!(correlation, 7);
        return Some(decode_body(&frame, 4, VERSION, "MirroringStatusResponse").unwrap());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_home_streams_each_remote_its_own_topics_and_ends_when_it_is_unregistered() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = home_cluster(&store, dir.path());
    let home_tls = HomeTls::new();
    let public = serve_public(
        "127.0.0.1:0".parse().unwrap(),
        cluster.clone(),
        home_tls.access(),
    )
    .await
    .unwrap();

    // An unknown remote is refused, with Fluvio's code.
    let mut unknown = connect(public.addr(), &home_tls, "edge9").await;
    let refusal = next(&mut unknown).await.unwrap();
    assert_eq!(refusal.error_code, ErrorCode::MirrorNotFound);
    assert!(refusal.error_message.unwrap().contains("not registered"));
    assert!(
        next(&mut unknown).await.is_none(),
        "and the connection closed"
    );

    let mut edge1 = connect(public.addr(), &home_tls, "edge1").await;
    let first = next(&mut edge1).await.unwrap();
    assert_eq!(first.error_code, ErrorCode::None);
    let names: Vec<&str> = first.topics.iter().map(|t| t.key.as_str()).collect();
    assert_eq!(names, ["metrics"], "only the topics that list edge1");
    let topic = &first.topics[0];
    assert_eq!(
        (
            topic.spu_id,
            topic.spu_endpoint.as_str(),
            topic.spu_key.as_str()
        ),
        (5001, "127.0.0.1:31005", "5001")
    );
    assert!(
        matches!(topic.spec.replicas(), ReplicaSpec::Mirror(MirrorConfig::Home(h)) if !h.source)
    );

    let mut edge2 = connect(public.addr(), &home_tls, "edge2").await;
    let names: Vec<String> = next(&mut edge2)
        .await
        .unwrap()
        .topics
        .into_iter()
        .map(|t| t.key)
        .collect();
    assert_eq!(names, ["config", "metrics"]);

    // A change is sent again; a deleted topic drops out.
    cluster.delete_topic("metrics").unwrap();
    // (A heartbeat may repeat the old list first.)
    while !next(&mut edge1).await.unwrap().topics.is_empty() {}

    // Unregistering edge1 ends its stream; edge2's goes on.
    cluster.unregister_remote("edge1").unwrap();
    while next(&mut edge1).await.is_some() {}
    cluster
        .create_mirror_topic("more", &["edge2".to_string()], false)
        .unwrap();
    loop {
        let update = next(&mut edge2).await.expect("edge2's stream goes on");
        if update.topics.iter().any(|t| t.key == "more") {
            break;
        }
    }
    public.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_remote_sc_keeps_its_copies_in_step_with_the_home() {
    let home_dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let home = home_cluster(&store, home_dir.path());
    let home_tls = HomeTls::new();
    let public = serve_public(
        "127.0.0.1:0".parse().unwrap(),
        home.clone(),
        home_tls.access(),
    )
    .await
    .unwrap();
    let edge_dir = tempfile::tempdir().unwrap();
    let edge = store.open(edge_dir.path());
    edge.register_spu(6001, "127.0.0.1:32005", "127.0.0.1:32004")
        .unwrap();
    // A local topic that happens to share a home topic's name stays local.
    edge.create_topic("config", 1).unwrap();
    let tls = home_tls.client_tls("edge2");
    edge.connect_home("home", "edge2", &public.addr().to_string(), Some(&tls))
        .unwrap();
    let (stop, signal) = Shutdown::new();
    let remote = tokio::spawn(mg_sc::mirroring::remote::run(edge.clone(), signal));

    let mut changes = edge.subscribe();
    let copies = |edge: &Cluster| -> Vec<(String, bool)> {
        edge.topics()
            .into_iter()
            .filter_map(|t| match t.replicas {
                mg_sc::model::TopicReplicas::MirrorRemote { target, .. } => Some((t.name, target)),
                _ => None,
            })
            .collect()
    };
    tokio::time::timeout(Duration::from_secs(20), async {
        while copies(&edge) != [("metrics".to_string(), false)] {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the edge copies metrics, and leaves its own config alone");
    let partition = edge
        .partitions()
        .into_iter()
        .find(|p| p.topic == "metrics")
        .unwrap();
    assert!(matches!(
        partition.mirror,
        Some(mg_sc::model::PartitionMirror::Remote { ref home_cluster, home_spu_id: 5001, ref home_spu_endpoint, target: false, .. })
            if home_cluster == "home" && home_spu_endpoint == "127.0.0.1:31005"
    ));
    assert!(matches!(
        edge.delete_topic("metrics"),
        Err(ApiError::MirrorDeleteFromRemote)
    ));

    // The home deletes the topic: so does the edge (its copy is marked as
    // being deleted, hidden from lists).
    home.delete_topic("metrics").unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while !copies(&edge).is_empty() {
            changes.changed().await.unwrap();
        }
    })
    .await
    .expect("the edge deletes its copy");
    assert!(edge.has_topic("config"), "the local topic is untouched");

    stop.trigger();
    remote.await.unwrap();
    public.shutdown().await;
}
