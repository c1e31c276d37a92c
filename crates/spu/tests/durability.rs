//! When the SPU answers relative to the disk, per fsync policy, over a real
//! socket: `--fsync always` answers even acks = 1 only after a sync that
//! covers the records; `on-commit` syncs for acks = -1 only.

mod common;

use common::TestSpu;
use mg_storage::FsyncPolicy;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_always_commits_every_produce_before_answering() {
    let spu = TestSpu::start_with(|config| config.log.fsync = FsyncPolicy::Always).await;
    spu.lead(1, &[("t", 0, None)]);
    let addr = spu.addr();
    let code = tokio::task::spawn_blocking(move || mg_testkit::produce_code(&addr, "t", 0))
        .await
        .unwrap();
    assert_eq!(code, 0);
    // acks = 1, and still synced before the answer came.
    assert_eq!(spu.spy.appends_to("t", 0), 1);
    assert!(spu.spy.syncs_of("t", 0) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsync_on_commit_leaves_acks_one_to_the_os() {
    let spu = TestSpu::start().await;
    spu.lead(1, &[("t", 0, None)]);
    let addr = spu.addr();
    let code = tokio::task::spawn_blocking(move || mg_testkit::produce_code(&addr, "t", 0))
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(spu.spy.appends_to("t", 0), 1);
    assert_eq!(spu.spy.syncs_of("t", 0), 0);
}
