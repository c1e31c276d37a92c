//! The official `fluvio` 0.50.1 client against our SC and SPU, on loopback:
//! connect, create a topic, register remotes, create a mirror topic for them,
//! produce and consume, and see a home produce to the mirror topic refused;
//! then, as a remote, a produce to a home-to-remote target refused.

#![allow(deprecated)] // `partition_consumer` is the 0.50 client's simplest consumer

mod common;

use std::time::Duration;

use fluvio::metadata::topic::{
    HomeMirrorConfig, MirrorConfig, RemoteMirrorConfig, SpuMirrorConfig, TopicSpec,
};
use fluvio::{Fluvio, FluvioClusterConfig, Offset, RecordKey};
use fluvio_controlplane_metadata::mirror::{Home, MirrorSpec, MirrorType, Remote};
use futures_util::StreamExt;
use mg_sc::{serve_private, serve_public};
use mg_spu::{Spu, SpuConfig};

const SPU: i32 = 5001;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_client_works_against_our_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let store = common::TestStore::from_env();
    let cluster = store.open(&dir.path().join("sc"));
    let private = serve_private("127.0.0.1:0".parse().unwrap(), cluster.clone())
        .await
        .unwrap();
    let public = serve_public(
        "127.0.0.1:0".parse().unwrap(),
        cluster.clone(),
        Default::default(),
    )
    .await
    .unwrap();

    let mut config = SpuConfig::new(SPU, dir.path().join("spu"));
    config.sc = Some(private.addr());
    let spu = Spu::new(config).unwrap().start().await.unwrap();
    cluster
        .register_spu(SPU, &spu.addr().to_string(), &private.addr().to_string())
        .unwrap();
    let mut control = spu.control();
    tokio::time::timeout(Duration::from_secs(20), control.wait_for(|s| s.connected))
        .await
        .expect("the SPU registers")
        .unwrap();

    let fluvio = Fluvio::connect_with_config(&FluvioClusterConfig::new(public.addr().to_string()))
        .await
        .expect("the official client connects");
    let admin = fluvio.admin().await;
    admin
        .create(
            "plain".to_string(),
            false,
            TopicSpec::new_computed(1, 1, None),
        )
        .await
        .unwrap();
    for remote in ["edge1", "edge2"] {
        let spec = MirrorSpec {
            mirror_type: MirrorType::Remote(Remote { id: remote.into() }),
        };
        admin.create(remote.to_string(), false, spec).await.unwrap();
    }
    let home = HomeMirrorConfig::from_simple("mirrored", vec!["edge1".into(), "edge2".into()]);
    admin
        .create(
            "mirrored".to_string(),
            false,
            TopicSpec::new_mirror(MirrorConfig::Home(home)),
        )
        .await
        .unwrap();

    // Creating it twice is refused as Fluvio refuses it.
    let again = admin
        .create(
            "plain".to_string(),
            false,
            TopicSpec::new_computed(1, 1, None),
        )
        .await
        .unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");

    let topics = admin.all::<TopicSpec>().await.unwrap();
    let mut names: Vec<&str> = topics.iter().map(|t| t.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["mirrored", "plain"]);
    assert_eq!(admin.all::<MirrorSpec>().await.unwrap().len(), 2);

    // Produce and consume on the plain topic, through the SPU.
    assert_eq!(produce_one(&fluvio, "plain", "hello").await, Ok(0));

    let consumer = fluvio.partition_consumer("plain", 0).await.unwrap();
    let mut stream = consumer.stream(Offset::beginning()).await.unwrap();
    let record = tokio::time::timeout(Duration::from_secs(20), stream.next())
        .await
        .expect("a record arrives")
        .expect("the stream is open")
        .expect("a record");
    assert_eq!(record.value(), b"hello");

    // A home produce to the mirror topic is refused, as the CLI shows it.
    assert_eq!(
        produce_one(&fluvio, "mirrored", "not from home").await,
        Err(
            "Producer error: Producer received an error code: produce from home is not allowed"
                .into()
        )
    );

    // The same cluster as a remote: a home to mirror with, and the remote
    // side of a to-home topic and of a home-to-remote one.
    let home = MirrorSpec {
        mirror_type: MirrorType::Home(Home {
            id: "home".into(),
            remote_id: "edge1".into(),
            public_endpoint: "127.0.0.1:9003".into(),
            client_tls: None,
        }),
    };
    admin.create("home".to_string(), false, home).await.unwrap();
    for (name, target) in [("to-home", false), ("from-home", true)] {
        let remote = RemoteMirrorConfig {
            home_cluster: "home".into(),
            home_spus: vec![SpuMirrorConfig {
                id: 5001,
                key: "home-5001".into(),
                endpoint: "127.0.0.1:9005".into(),
            }],
            target,
        };
        admin
            .create(
                name.to_string(),
                false,
                TopicSpec::new_mirror(MirrorConfig::Remote(remote)),
            )
            .await
            .unwrap();
    }
    let labels: Vec<(String, &str)> = admin
        .all::<TopicSpec>()
        .await
        .unwrap()
        .iter()
        .map(|t| (t.name.clone(), t.spec.replicas().type_label()))
        .collect();
    assert!(
        labels.contains(&("to-home".into(), "to-home")),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("from-home".into(), "from-home")),
        "{labels:?}"
    );
    assert!(
        labels.contains(&("mirrored".into(), "from-remote")),
        "{labels:?}"
    );

    produce_one(&fluvio, "to-home", "edge data")
        .await
        .expect("a to-home remote partition takes local writes");

    assert_eq!(
        produce_one(&fluvio, "from-home", "written at the target").await,
        Err("Producer error: Producer received an error code: produce from remote target is not allowed".into())
    );

    spu.shutdown().await;
    public.shutdown().await;
    private.shutdown().await;
}

/// Sends one record through the official producer and waits for the SPU's
/// answer: the record's offset, or the error as the client shows it.
async fn produce_one(fluvio: &Fluvio, topic: &str, value: &str) -> Result<i64, String> {
    let producer = fluvio.topic_producer(topic).await.unwrap();
    let sent = producer.send(RecordKey::NULL, value).await.unwrap();
    producer.flush().await.unwrap();
    sent.wait()
        .await
        .map(|metadata| metadata.offset())
        .map_err(|err| err.to_string())
}
