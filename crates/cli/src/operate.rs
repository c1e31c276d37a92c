//! Operating mirrors: `topic promote`, `topic failover`, `topic
//! mirror-pause`, `topic mirror-resume`, and the per-partition view of
//! `remote list` and `home status`. These speak mirror-guard's own admin
//! requests (`mg_controlplane::operate`): Fluvio 0.50 has no such verbs.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Args;
use fluvio_protocol::{Decoder, Encoder};
use mg_controlplane::operate::{
    MIRROR_OPERATE_KEY, MIRROR_REPORT_KEY, MirrorAction, MirrorOperateRequest,
    MirrorOperateResponse, MirrorPartitionRow, MirrorReportRequest, MirrorReportResponse,
};
use mg_transport::{FrameLimits, FrameReader, decode_body, dial_endpoint, encode_request};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::error::{CliError, Result};
use crate::output::{Output, print_table};
use crate::target::Target;

/// `topic promote|failover|mirror-pause|mirror-resume NAME`
#[derive(Args, Debug)]
pub struct MirrorActionArgs {
    /// The mirror topic.
    pub name: String,
    /// Only the partition this remote mirrors into (on a home); every
    /// partition this cluster receives when not given.
    #[arg(long)]
    pub remote: Option<String>,
    /// Seconds to wait for the partition to be in sync (promote) and for
    /// its leader to confirm the fence.
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    #[command(flatten)]
    pub target: Target,
}

const CLIENT_ID: &str = "mirror-guard cli";

/// One request to the SC's public port, and its answer.
async fn call<Q: Encoder, A: Decoder + Default>(
    target: &Target,
    key: u16,
    request: &Q,
    name: &'static str,
) -> Result<A> {
    let connect = |reason: String| CliError::Connect {
        sc: target.sc.clone(),
        reason,
    };
    let socket = dial_endpoint(&target.sc)
        .await
        .map_err(|err| connect(err.to_string()))?;
    let (read, mut write) = socket.into_split();
    let frame = encode_request(key, 0, 1, CLIENT_ID, request)
        .map_err(|err| CliError::Client(err.to_string()))?;
    write.write_all(&frame).await?;
    let mut frames = FrameReader::new(read, FrameLimits::default());
    let answer = frames
        .next()
        .await
        .map_err(|err| connect(err.to_string()))?
        .ok_or_else(|| {
            connect(format!(
                "the SC closed the connection: it does not serve {name}"
            ))
        })?;
    decode_body(&answer, 4, 0, name).map_err(|err| CliError::Client(err.to_string()))
}

/// Every mirror partition of the cluster at `target`.
pub async fn report(target: &Target) -> Result<Vec<MirrorPartitionRow>> {
    let response: MirrorReportResponse = call(
        target,
        MIRROR_REPORT_KEY,
        &MirrorReportRequest {},
        "MirrorReport",
    )
    .await?;
    Ok(response.partitions)
}

/// Runs one action and prints where the partitions stand.
pub async fn act(action: MirrorAction, args: MirrorActionArgs) -> Result<()> {
    let request = MirrorOperateRequest {
        topic: args.name.clone(),
        remote: args.remote.clone().unwrap_or_default(),
        action: action.as_str().into(),
        timeout_ms: Duration::from_secs(args.timeout).as_millis() as u64,
    };
    let response: MirrorOperateResponse =
        call(&args.target, MIRROR_OPERATE_KEY, &request, "MirrorOperate").await?;
    if !response.partitions.is_empty() {
        print_partitions(&response.partitions, Output::Table);
    }
    match response.error {
        Some(error) => Err(CliError::Mirror(error)),
        None => {
            let done = match action {
                MirrorAction::Promote => "promoted",
                MirrorAction::Failover => "failed over",
                MirrorAction::Pause => "paused",
                MirrorAction::Resume => "resumed",
            };
            println!("topic \"{}\": mirroring {done}", args.name);
            Ok(())
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// "3s ago", or "-" for never.
pub fn ago(ms: u64) -> String {
    if ms == 0 {
        "-".into()
    } else {
        format!("{}s ago", now_ms().saturating_sub(ms) / 1000)
    }
}

/// One row as JSON.
pub fn row_json(row: &MirrorPartitionRow) -> Value {
    let link = row.link.as_ref();
    json!({
        "peer": row.peer,
        "topic": row.topic,
        "partition": row.partition,
        "direction": row.direction,
        "state": row.state,
        "epoch": row.epoch,
        "leader": row.leader,
        "connected": link.is_some_and(|l| l.connected),
        "lag": link.map(|l| l.lag).filter(|lag| *lag >= 0),
        "last_seen_ms": link.map(|l| l.last_seen_ms).filter(|ms| *ms > 0),
        "records": link.map_or(0, |l| l.records),
        "bytes": link.map_or(0, |l| l.bytes),
        "refused": link.map_or(0, |l| l.refused),
    })
}

/// The per-partition table (or JSON list).
pub fn print_partitions(rows: &[MirrorPartitionRow], output: Output) {
    if output == Output::Json {
        let list: Vec<Value> = rows.iter().map(row_json).collect();
        println!("{}", Value::Array(list));
        return;
    }
    let table = rows
        .iter()
        .map(|row| {
            let link = row.link.as_ref();
            vec![
                row.peer.clone(),
                format!("{}-{}", row.topic, row.partition),
                row.direction.clone(),
                row.state.clone(),
                link.filter(|l| l.lag >= 0)
                    .map_or("-".into(), |l| l.lag.to_string()),
                ago(link.map_or(0, |l| l.last_seen_ms)),
                link.map_or(0, |l| l.bytes).to_string(),
                row.epoch.to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "PEER",
            "PARTITION",
            "DIRECTION",
            "STATE",
            "LAG",
            "LAST SEEN",
            "BYTES",
            "EPOCH",
        ],
        table,
    );
}
