//! A full disk, and recovery without a restart: keysmith's data directory
//! on a small tmpfs, filled until a write fails. Writes are then refused
//! with UNAVAILABLE and the health service `keysmith.writes` says
//! NOT_SERVING; once space is freed, keysmith reopens its store by itself
//! and writes resume. Nothing acknowledged is lost and nothing that was
//! refused appears, before and after a restart.
//!
//! Mounting a tmpfs needs root; where it is not permitted the test says so
//! and passes without running.
mod common;

use std::{
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::Duration,
};

use common::*;
use keysmith_api::v1 as pb;
use tonic::Code;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .ok()?;
        if !mounted.status.success() {
            eprintln!(
                "SKIPPED: mounting a tmpfs was refused ({}): the full-disk recovery test needs \
                 root (or CAP_SYS_ADMIN)",
                String::from_utf8_lossy(&mounted.stderr).trim()
            );
            return None;
        }
        Some(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the file system until it refuses one more byte.
fn fill(path: &Path) -> PathBuf {
    let filler = path.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 64 * 1024];
    while file.write_all(&chunk).is_ok() {}
    let small = [0u8; 512];
    while file.write_all(&small).is_ok() {}
    let _ = file.sync_all();
    filler
}

fn request(i: usize) -> pb::IssueRequest {
    let mut req = guest(&format!("h-{i}"), &["lobby"], T0, T0 + DAY, "");
    req.request_id = format!("r-{i}");
    req
}

async fn writes_status(s: &TestServer) -> ServingStatus {
    HealthClient::new(s.channel.clone())
        .check(HealthCheckRequest {
            service: keysmith_server::WRITES_HEALTH.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

async fn holds(s: &TestServer, holder: &str) -> usize {
    s.list(pb::ListKeysRequest {
        property_id: PROPERTY.into(),
        holder_id: holder.into(),
        include_revoked: true,
        ..Default::default()
    })
    .await
    .unwrap()
    .keys
    .len()
}

/// Every acknowledged key is there, the refused requests left nothing, and
/// the write after the recovery is there.
async fn check(
    s: &TestServer,
    acknowledged: &[(usize, String)],
    refused: usize,
    after: &pb::AccessKey,
) {
    for (i, key_id) in acknowledged {
        assert_eq!(s.get(key_id).await.unwrap().holder_id, format!("h-{i}"));
    }
    assert_eq!(holds(s, &format!("h-{refused}")).await, 0);
    assert_eq!(holds(s, &format!("h-{}", refused + 1)).await, 0);
    assert_eq!(s.get(&after.key_id).await.unwrap().holder_id, "h-9999");
}

#[tokio::test]
async fn a_full_disk_refuses_writes_then_keysmith_recovers_by_itself() {
    let Some(fs) = Tmpfs::mount("24m") else {
        return;
    };
    let data_dir = fs.path().join("data");
    let mut c = config(&data_dir);
    // A small cache, so that the test's writes reach the disk soon.
    c.storage.memory_budget_mb = 16;
    let s = TestServer::start_in(c, Arc::new(TestClock::new(T0))).await;
    assert_eq!(writes_status(&s).await, ServingStatus::Serving);

    let filler = fill(fs.path());
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..5_000 {
        match s.issue(request(i)).await {
            Ok(key) => acknowledged.push((i, key.key_id)),
            Err(status) => {
                assert_eq!(
                    reason(&status),
                    (Code::Unavailable, "STORE_UNAVAILABLE".into())
                );
                refused = Some(i);
                break;
            }
        }
    }
    let refused = refused.expect("a write failed once the disk was full");
    assert_eq!(writes_status(&s).await, ServingStatus::NotServing);
    // Refused at once while the store cannot be written.
    let err = s.issue(request(refused + 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);

    // Space comes back; keysmith reopens its store by itself.
    std::fs::remove_file(&filler).unwrap();
    let mut watch = HealthClient::new(s.channel.clone())
        .watch(HealthCheckRequest {
            service: keysmith_server::WRITES_HEALTH.into(),
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(reply) = watch.message().await.unwrap() {
            if reply.status() == ServingStatus::Serving {
                return;
            }
        }
        panic!("the health stream ended before writes resumed");
    })
    .await
    .expect("writes resume within a minute of the space coming back");
    drop(watch);

    let after = s.issue(request(9_999)).await.expect("writes resume");
    check(&s, &acknowledged, refused, &after).await;
    let mut s = s.restart().await;
    check(&s, &acknowledged, refused, &after).await;
    // Stopped before the file system is unmounted.
    s.running.take().unwrap().stop().await.unwrap();
}
