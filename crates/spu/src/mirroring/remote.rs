//! The remote side: for every partition this SPU leads as the remote side
//! of a mirror topic, one link to the home SPU its role names, dialed here
//! and redialed with backoff, under the remote id the Home mirror object
//! gives. Links start and stop as roles, mirror objects and mirror
//! controls change: a paused partition has no link, a new epoch restarts it.

use std::collections::HashMap;
use std::time::Duration;

use fluvio_controlplane_metadata::mirror::ClientTls;
use fluvio_controlplane_metadata::mirror::MirrorPairStatus;
use fluvio_controlplane_metadata::partition::PartitionMirrorConfig;
use fluvio_protocol::link::versions::ApiVersionsRequest;
use fluvio_spu_schema::server::mirror::StartMirrorRequest;
use mg_transport::tls::TlsClient;
use mg_transport::{Backoff, FrameLimits, FrameReader, Shutdown, ShutdownSignal, encode_request};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tracing::{Instrument, info, info_span};

use super::link::{self, Ended, Link, LinkError, finish};
use super::protocol::{Keys, START_MIRROR};
use super::{MirrorHandles, changed};

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The StartMirror version Fluvio 0.50 sends (the SPU schema's common version).
const START_MIRROR_VERSION: i16 = 25;
const API_VERSIONS: u16 = 18;
/// A link that lasted this long was working: the next failure starts the
/// backoff again from its shortest delay.
const STEADY: Duration = Duration::from_secs(5);

/// One link as the roles and mirror objects describe it; a link whose plan
/// changes is restarted.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Plan {
    topic: String,
    partition: u32,
    /// The home's id (the Home mirror object).
    home: String,
    /// This cluster's id at the home.
    remote_id: String,
    /// The home SPU's public endpoint.
    endpoint: String,
    /// Home-to-remote: this side receives.
    target: bool,
    /// The home SPU's key: the SNI prefix.
    home_spu_key: String,
    /// TLS material from the Home object (pushed by the SC, never logged).
    tls: Option<ClientTls>,
    /// The partition's mirror epoch: a new one restarts the link.
    epoch: u32,
}

struct Running {
    plan: Plan,
    stop: Shutdown,
    task: JoinHandle<()>,
}

/// Keeps one link per led remote partition until shutdown.
pub(crate) async fn run(handles: MirrorHandles, mut shutdown: ShutdownSignal) {
    let mut links: HashMap<(String, u32), Running> = HashMap::new();
    let mut directory = handles.directory.clone();
    let mut roles = handles.roles_changed.clone();
    loop {
        let mut wanted = plans(&handles);
        links.retain(|key, running| {
            let keep = wanted.get(key) == Some(&running.plan);
            if !keep {
                running.stop.trigger();
            }
            keep
        });
        wanted.retain(|key, _| !links.contains_key(key));
        for (key, plan) in wanted {
            let (stop, signal) = Shutdown::new();
            let span = info_span!("mirror", topic = %plan.topic, home = %plan.endpoint);
            let task =
                tokio::spawn(run_link(plan.clone(), handles.clone(), signal).instrument(span));
            links.insert(key, Running { plan, stop, task });
        }
        tokio::select! {
            () = shutdown.wait() => break,
            () = changed(&mut directory) => {}
            () = changed(&mut roles) => {}
        }
    }
    for running in links.values() {
        running.stop.trigger();
    }
    for (_, running) in links {
        let _ = running.task.await;
    }
}

fn plans(handles: &MirrorHandles) -> HashMap<(String, u32), Plan> {
    let directory = handles.directory.borrow().clone();
    let snapshot = handles.roles.snapshot();
    let mut plans = HashMap::new();
    for topic in snapshot.topics() {
        for role in topic.partitions() {
            let Some(PartitionMirrorConfig::Remote(remote)) = role.mirror() else {
                continue;
            };
            // Without its Home object this cluster does not know its own
            // id at the home yet: the link waits for it.
            let Some(home) = directory.home(&remote.home_cluster) else {
                continue;
            };
            // Paused (here, or by the home): the records wait.
            let control = handles.controls.get(topic.name(), role.partition()).control;
            if control.paused {
                continue;
            }
            let plan = Plan {
                topic: topic.name().to_string(),
                partition: role.partition(),
                home: home.id.clone(),
                remote_id: home.remote_id.clone(),
                endpoint: remote.home_spu_endpoint.clone(),
                target: remote.target,
                home_spu_key: remote.home_spu_key.clone(),
                tls: home.client_tls.clone(),
                epoch: control.epoch,
            };
            plans.insert((plan.topic.clone(), plan.partition), plan);
        }
    }
    plans
}

async fn run_link(plan: Plan, handles: MirrorHandles, mut stop: ShutdownSignal) {
    let mut backoff = Backoff::new(MIN_BACKOFF, MAX_BACKOFF);
    let link = Link {
        remote: plan.remote_id.clone(),
        mirror: plan.home.clone(),
        topic: plan.topic.clone(),
        partition: plan.partition,
        peer: plan.endpoint.clone(),
        epoch: plan.epoch,
    };
    loop {
        let stopping = {
            let mut stop = stop.clone();
            async move {
                stop.wait().await;
                "the link is no longer wanted".to_string()
            }
        };
        let began = tokio::time::Instant::now();
        let ended = connect_and_run(&plan, &link, &handles, stopping).await;
        if began.elapsed() >= STEADY {
            backoff.reset();
        }
        let stopped = matches!(ended, Ok(Ended::Stopped(_)));
        finish(&link, &handles, ended);
        if stopped || !backoff.wait(&mut stop).await {
            break;
        }
    }
    // Stopped because the partition was paused, or its mirroring ended:
    // the home closed the link first (it fences at once), which is no
    // failure of the pairing; it must not show as one.
    let control = handles.controls.get(&plan.topic, plan.partition).control;
    if control.paused || control.ended {
        handles
            .pairing
            .set(&plan.home, MirrorPairStatus::Successful);
    }
}

async fn connect_and_run(
    plan: &Plan,
    link: &Link,
    handles: &MirrorHandles,
    stopping: impl Future<Output = String>,
) -> Result<Ended, LinkError> {
    match &plan.tls {
        None => {
            let socket = mg_transport::dial_endpoint(&plan.endpoint).await?;
            let (read, write) = tokio::io::split(socket);
            handshake_and_run(plan, link, handles, read, write, stopping).await
        }
        Some(tls) => {
            let client = TlsClient::from_pem(
                tls.ca_cert.as_bytes(),
                tls.client_cert.as_bytes(),
                tls.client_key.as_bytes(),
            )?;
            // As Fluvio's remotes do: SNI `<home SPU key>.<domain>`.
            let server_name = format!("{}.{}", plan.home_spu_key, tls.domain);
            let stream = client.connect(&plan.endpoint, &server_name).await?;
            let (read, write) = tokio::io::split(stream);
            handshake_and_run(plan, link, handles, read, write, stopping).await
        }
    }
}

async fn handshake_and_run<R, W>(
    plan: &Plan,
    link: &Link,
    handles: &MirrorHandles,
    read: R,
    mut write: W,
    stopping: impl Future<Output = String>,
) -> Result<Ended, LinkError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut frames = FrameReader::new(read, FrameLimits::default());
    // As Fluvio's clients do: ApiVersions first; the answer is not needed.
    let versions = encode_request(
        API_VERSIONS,
        0,
        1,
        "mirror remote",
        &ApiVersionsRequest::default(),
    )?;
    write.write_all(&versions).await?;
    frames.next().await?.ok_or(LinkError::Closed)?;
    let start = StartMirrorRequest {
        remote_replica: format!("{}-{}", plan.topic, plan.partition),
        remote_cluster_id: plan.remote_id.clone(),
    };
    let client_id = format!("leader: {}-{}", plan.topic, plan.partition);
    write
        .write_all(&encode_request(
            START_MIRROR,
            START_MIRROR_VERSION,
            2,
            &client_id,
            &start,
        )?)
        .await?;
    handles.pairing.set(&plan.home, MirrorPairStatus::Waiting);
    info!(remote_id = %plan.remote_id, target = plan.target, tls = plan.tls.is_some(), "mirror handshake sent");
    let (mine, theirs) = (Keys::FROM_REMOTE, Keys::FROM_HOME);
    // To home, this side sends; home to remote (target), it receives.
    let sends = !plan.target;
    link::run(
        sends,
        link,
        &mut frames,
        &mut write,
        mine,
        theirs,
        handles,
        stopping,
    )
    .await
}
