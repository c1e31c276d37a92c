//! Judges sample produce requests against a sample role table and prints
//! what the SPU would answer. Run with `make run`.
//!
//! The frames are encoded with Fluvio 0.50.1's own encoder, exactly as the
//! official client sends them; the response is decoded back with Fluvio's
//! decoder, as the client would read it.

use std::io::Cursor;
use std::sync::Arc;

use bytes::BytesMut;
use fluvio_protocol::Decoder;
use fluvio_spu_schema::produce::ProduceResponse;
use mg_guard::{Guard, Verdict};
use mg_roles::{ReplicaRole, RoleTable, RoleUpdate};
use mg_testkit::{ProduceSpec, home, remote};

fn main() {
    // This SPU (id 5001) leads four partitions. The SC says which role each plays.
    let table = Arc::new(RoleTable::new(5001));
    let lead = |topic: &str, mirror| ReplicaRole {
        topic: topic.into(),
        partition: 0,
        leader: 5001,
        mirror,
    };
    table.apply(RoleUpdate::Sync {
        epoch: 1,
        all: vec![
            lead("orders", None),
            lead("edge-metrics", Some(home("edge1", false))), // to-home mirror, seen at home
            lead("config", Some(home("edge1", true))),        // home-to-remote, seen at home
            lead("alerts", Some(remote("home", true))),       // home-to-remote, seen at the remote
        ],
    });
    let mut guard = Guard::new(table);

    println!("role table (SPU 5001):");
    println!("  orders/0        plain");
    println!(
        "  edge-metrics/0  Home{{edge1}}            (to-home mirror: data only from the remote)"
    );
    println!("  config/0        Home{{edge1, source}}    (home-to-remote: home is the source)");
    println!(
        "  alerts/0        Remote{{home, target}}   (home-to-remote: this remote is the target)"
    );

    let record = || vec![vec![b"hello".to_vec()]];
    let request = ProduceSpec {
        timeout_ms: 1500,
        topics: ["orders", "edge-metrics", "config", "alerts", "unknown"]
            .into_iter()
            .map(|t| (t.to_string(), vec![(0, record())]))
            .collect(),
        ..Default::default()
    };
    let frame = request.frame(25, 7);
    println!(
        "\nProduceRequest v25, {} bytes, 5 partition entries:",
        frame.len()
    );

    let judgement = guard.judge(&frame).expect("a well-formed frame");
    let mut accepted = 0;
    for v in judgement.verdicts() {
        match &v.verdict {
            Verdict::Accept(records) => {
                accepted += 1;
                println!(
                    "  {:<14} p{}  accept  ({} bytes of records, not copied)",
                    v.topic,
                    v.partition,
                    records.len()
                );
            }
            Verdict::Reject(code) => {
                println!(
                    "  {:<14} p{}  reject  {} ({code})",
                    v.topic,
                    v.partition,
                    code.tag()
                );
            }
        }
    }

    // Storage would append the accepted record sets; pretend at offsets 100, 200.
    let outcomes = (0..accepted).map(|i| Ok(100 * (i as i64 + 1)));
    let mut out = BytesMut::new();
    let len = judgement
        .respond(outcomes, &mut out)
        .expect("one outcome per accepted entry");

    let response =
        ProduceResponse::decode_from(&mut Cursor::new(&out[8..]), 25).expect("fluvio decodes it");
    println!("\nProduceResponse, {len} bytes, as the official client decodes it:");
    for topic in &response.responses {
        for p in &topic.partitions {
            let outcome = if p.error_code.is_ok() {
                format!("ok, base_offset {}", p.base_offset)
            } else {
                format!("error: {}", p.error_code)
            };
            println!("  {:<14} p{}  {outcome}", topic.name, p.partition_index);
        }
    }
    let stats = guard.stats().snapshot();
    println!(
        "\nguard counters: accepted {}, not-leader {}, from-home {}, remote-target {}",
        stats.accepted, stats.not_leader, stats.from_home, stats.remote_target
    );
}
