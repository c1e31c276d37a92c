//! mirror-guard's own admin requests on the public port
//! (`mg_controlplane::operate`): what `topic promote`, `failover`,
//! `mirror-pause`, `mirror-resume`, `remote list` and `home status` send.
//!
//! ```text
//! MirrorOperate (7001)  check -> [promote: wait until in sync] -> commit
//!                       (state + new epoch, persisted, pushed) -> wait until
//!                       every leader reports the fence -> answer
//! MirrorReport  (7002)  every mirror partition's state and link
//! ```
//!
//! The answer comes only once the leaders fenced at the new epoch: from
//! then on no mirrored record of an older link is appended.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mg_controlplane::operate::{
    MIRROR_OPERATE_KEY, MIRROR_REPORT_KEY, MirrorAction, MirrorOperateRequest,
    MirrorOperateResponse, MirrorReportRequest, MirrorReportResponse,
};
use mg_transport::{RequestHeader, decode_body, encode_response};

use super::{PublicError, Writer, send};
use crate::cluster::Cluster;

/// The longest an operator may ask to wait.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// Whether `api_key` is one of these requests.
pub(super) fn serves(api_key: u16) -> bool {
    matches!(api_key, MIRROR_OPERATE_KEY | MIRROR_REPORT_KEY)
}

/// Answers one request.
pub(super) async fn handle(
    frame: &Bytes,
    cluster: &Arc<Cluster>,
    writer: &Writer,
) -> Result<(), PublicError> {
    let (header, start) =
        RequestHeader::parse(frame).map_err(|err| PublicError::Malformed(err.to_string()))?;
    let (correlation, version) = (header.correlation_id, header.api_version);
    let malformed = |err: mg_transport::BodyError| PublicError::Malformed(err.to_string());
    let answer = if header.api_key == MIRROR_OPERATE_KEY {
        let request: MirrorOperateRequest =
            decode_body(frame, start, version, "MirrorOperate").map_err(malformed)?;
        encode_response(correlation, version, &operate(cluster, request).await)
    } else {
        let _: MirrorReportRequest =
            decode_body(frame, start, version, "MirrorReport").map_err(malformed)?;
        let report = MirrorReportResponse {
            partitions: cluster.mirror_rows(),
        };
        encode_response(correlation, version, &report)
    };
    let answer = answer.map_err(|err| PublicError::Internal(err.to_string()))?;
    send(writer, &answer).await?;
    Ok(())
}

async fn operate(cluster: &Arc<Cluster>, request: MirrorOperateRequest) -> MirrorOperateResponse {
    let failed = |error: String| MirrorOperateResponse {
        error: Some(error),
        partitions: Vec::new(),
    };
    let Some(action) = MirrorAction::parse(&request.action) else {
        return failed(format!("unknown mirror action {:?}", request.action));
    };
    let topic = request.topic.as_str();
    let remote = (!request.remote.is_empty()).then_some(request.remote.as_str());
    let timeout = Duration::from_millis(request.timeout_ms).min(MAX_TIMEOUT);
    let targets = match cluster.mirror_targets(topic, remote, action) {
        Ok(targets) => targets,
        Err(err) => return failed(err.to_string()),
    };
    if action == MirrorAction::Promote {
        // In sync means as reported after this request came: a report from
        // before may predate records the sender took since.
        let since = std::time::Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        if let Err(why) = cluster
            .wait_until(deadline, |c| c.out_of_sync(&targets, since))
            .await
        {
            return MirrorOperateResponse {
                error: Some(format!(
                    "not promoted: not in sync within {timeout:?}: {why} (use `topic failover` if the sender is gone)"
                )),
                partitions: rows(cluster, &targets),
            };
        }
    }
    let acting = Arc::clone(cluster);
    let (owned_topic, owned_remote) = (topic.to_string(), remote.map(str::to_string));
    // Committing writes the metadata: off the async workers.
    let committed = tokio::task::spawn_blocking(move || {
        acting.act_on_mirror(&owned_topic, owned_remote.as_deref(), action)
    })
    .await;
    match committed {
        Ok(Ok(_)) => {}
        Ok(Err(err)) => return failed(err.to_string()),
        Err(err) => return failed(format!("the change failed: {err}")),
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let fenced = cluster.wait_until(deadline, |c| c.unfenced(&targets)).await;
    MirrorOperateResponse {
        error: fenced.err().map(|why| {
            format!(
                "{} committed, but not yet confirmed within {timeout:?}: {why}; each leader fences when it hears of it",
                action.as_str()
            )
        }),
        partitions: rows(cluster, &targets),
    }
}

fn rows(
    cluster: &Cluster,
    targets: &[(String, u32)],
) -> Vec<mg_controlplane::operate::MirrorPartitionRow> {
    cluster
        .mirror_rows()
        .into_iter()
        .filter(|row| targets.contains(&(row.topic.clone(), row.partition)))
        .collect()
}
