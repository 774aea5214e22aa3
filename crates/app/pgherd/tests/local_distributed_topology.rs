//! CloudNativePG's distributed topology on the local platform: two clusters, `shop` and
//! `mirror`, each naming itself in `replica.self` and the primary cluster in `replica.primary`.
//! `mirror` starts as a replica of `shop` (cloned, streaming) while a writer commits to `shop`.
//! The controlled switchover: `shop` is demoted (`primary: mirror`): its primary stops cleanly
//! and follows `mirror`, and `status.demotionToken` appears; `mirror` is then promoted with that
//! token (`primary: mirror`, `promotionToken`): it promotes only once it has replayed past the
//! demoted primary's shutdown checkpoint. Every commit `shop` acknowledged is in `mirror`, a
//! checker sweeping both clusters never sees two writable primaries, `shop` follows `mirror`'s
//! new writes, `status.lastPromotionToken` records the token, and the same token given back to
//! `shop` is refused (it is of a timeline `shop` has left) without promoting it.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use pgherd_testkit::local::{cluster_manifest, connect, Local};
use pgherd_testkit::writer::{Writer, TABLE};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// `name` in the distributed topology with `primary` as the primary cluster (and `token` to be
/// promoted with), `other` as its source; `mirror` clones `shop` to begin with.
fn member(
    name: &str,
    other: &str,
    primary: &str,
    token: Option<&str>,
    source_spec: &str,
) -> String {
    let bootstrap = if name == "mirror" {
        "  bootstrap:\n    pg_basebackup:\n      source: shop\n"
    } else {
        ""
    };
    let token = token
        .map(|t| format!("    promotionToken: {t}\n"))
        .unwrap_or_default();
    cluster_manifest(
        name,
        1,
        &format!(
            "{source_spec}  replica:\n    self: {name}\n    primary: {primary}\n    source: {other}\n{token}{bootstrap}  externalClusters:\n    - name: {other}\n      connectionParameters:\n        host: {other}-rw\n        user: migrator\n        dbname: postgres\n      password:\n        name: migrator-secret\n        key: password\n"
        ),
    )
}

/// A connection to `cluster`'s `-rw` as an application owner: the roles are the primary
/// cluster's, so either cluster's `-app` password may be the one that works.
async fn connect_rw(local: &Local, cluster: &str) -> Option<tokio_postgres::Client> {
    let addr = local.status(cluster).endpoints.get("rw")?.clone();
    for credentials in [cluster, "shop", "mirror"] {
        let mut config = local.app_config(credentials, &addr);
        config.connect_timeout(Duration::from_secs(1));
        if let Ok(c) = connect(&config).await {
            return Some(c);
        }
    }
    None
}

/// Whether `cluster`'s `-rw` is writable now (`None`: no answer).
async fn writable(local: &Local, cluster: &str) -> Option<bool> {
    let c = connect_rw(local, cluster).await?;
    let row = c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
    Some(!row.get::<_, bool>(0))
}

fn resource_status(local: &Local, cluster: &str) -> serde_json::Value {
    let out = local.run_ok(&["get", "cluster", cluster, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["status"].clone()
}

/// The checker thread, stopped and joined when dropped — also when the test fails, so the
/// `Local` it shares is dropped (and its clusters destroyed) before the test process ends.
struct Stopping(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Drop for Stopping {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
        if let Some(thread) = self.1.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_primary_cluster_hands_over_to_its_replica_cluster_with_a_token() {
    let local = Arc::new(Local::new(Path::new(env!("CARGO_BIN_EXE_pgherd"))));
    let dir = tempfile::tempdir().unwrap();
    let (role, secret) =
        pgherd_testkit::local::replication_source("migrator-secret", "migrator-pw");
    let shop = |primary: &str, token: Option<&str>| {
        format!(
            "{}{secret}",
            member("shop", "mirror", primary, token, &role)
        )
    };
    // Both members carry the same configuration (the role replicating between them and its
    // pg_hba line), as in CloudNativePG's distributed topology.
    let mirror =
        |primary: &str, token: Option<&str>| member("mirror", "shop", primary, token, &role);
    local.up(dir.path(), "shop", &shop("shop", None), 1);
    local.wait_for("shop", "the role applied", Duration::from_secs(60), |s| {
        s.managed_roles_status.reconciled.len() == 1
    });
    let rw = local.status("shop").endpoints["rw"].clone();
    let source = local.app_config("shop", &rw);
    let rt = pgherd_testkit::runtime();
    rt.block_on(pgherd_testkit::writer::prepare(&source))
        .unwrap();
    let writer = Writer::start("handover", source.clone(), Duration::from_millis(5));
    writer.wait_for_progress(30, Duration::from_secs(30));
    local.up(dir.path(), "mirror", &mirror("shop", None), 1);

    // Never two writable primaries across the two clusters, from here to the end.
    let stop = Arc::new(AtomicBool::new(false));
    let most = Arc::new(AtomicUsize::new(0));
    let checker = Stopping(stop.clone(), {
        let (local, stop, most) = (local.clone(), stop.clone(), most.clone());
        Some(std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            while !stop.load(Ordering::Relaxed) {
                let both = rt.block_on(async {
                    let (a, b) = tokio::join!(writable(&local, "shop"), writable(&local, "mirror"));
                    usize::from(a == Some(true)) + usize::from(b == Some(true))
                });
                most.fetch_max(both, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        }))
    });

    // Demote shop: it stops cleanly, issues its token and follows mirror.
    let shop_file = dir.path().join("shop.yaml");
    std::fs::write(&shop_file, shop("mirror", None)).unwrap();
    local.run_ok(&["apply", "-f", shop_file.to_str().unwrap()]);
    let token = local.eventually("shop's demotion token", 90, || {
        resource_status(&local, "shop")["demotionToken"]
            .as_str()
            .map(str::to_string)
    });
    let report = writer.stop();
    assert!(!report.acknowledged.is_empty());
    let said = String::from_utf8(local.run_ok(&["status", "shop"]).stdout).unwrap();
    assert!(
        said.contains("Replica Cluster Summary") && said.contains("Demotion token"),
        "{said}"
    );

    // Promote mirror with the token.
    let mirror_file = dir.path().join("mirror.yaml");
    std::fs::write(&mirror_file, mirror("mirror", Some(&token))).unwrap();
    local.run_ok(&["apply", "-f", mirror_file.to_str().unwrap()]);
    local.eventually("mirror writable", 90, || {
        rt.block_on(writable(&local, "mirror")).filter(|w| *w)
    });
    local.eventually("mirror's lastPromotionToken", 60, || {
        (resource_status(&local, "mirror")["lastPromotionToken"].as_str() == Some(token.as_str()))
            .then_some(())
    });
    let missing = local.eventually("mirror answering", 60, || {
        rt.block_on(async {
            let c = connect_rw(&local, "mirror").await?;
            pgherd_testkit::writer::missing(&c, &report).await.ok()
        })
    });
    assert!(
        missing.is_empty(),
        "{} commits shop acknowledged are missing from mirror: {missing:?}",
        missing.len()
    );

    // shop follows mirror: mirror's new rows reach it, and it stays read-only.
    let written = rt.block_on(async {
        let c = connect_rw(&local, "mirror").await.unwrap();
        c.execute(
            &format!("INSERT INTO {TABLE} VALUES ('after-handover', 1)"),
            &[],
        )
        .await
        .unwrap();
        c.query_one(&format!("SELECT count(*) FROM {TABLE}"), &[])
            .await
            .unwrap()
            .get::<_, i64>(0)
    });
    local.eventually("shop replaying mirror's writes", 90, || {
        rt.block_on(async {
            let c = connect_rw(&local, "shop").await?;
            let row = c
                .query_one(
                    &format!("SELECT pg_is_in_recovery(), (SELECT count(*) FROM {TABLE})"),
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, bool>(0) && row.get::<_, i64>(1) >= written).then_some(())
        })
    });

    // The same token given back to shop: refused (shop has left its timeline), not promoted.
    std::fs::write(&shop_file, shop("shop", Some(&token))).unwrap();
    local.run_ok(&["apply", "-f", shop_file.to_str().unwrap()]);
    let said = local.eventually("the stale token refused", 60, || {
        let status = local.status("shop");
        let said = format!("{:?}", status);
        said.contains("not the latest demotion").then_some(said)
    });
    assert!(said.contains("promotionToken"), "{said}");
    // Refused, it stays a standby of mirror (a moment later too).
    std::thread::sleep(Duration::from_secs(2));
    assert_ne!(rt.block_on(writable(&local, "shop")), Some(true));

    drop(checker);
    assert!(
        most.load(Ordering::Relaxed) <= 1,
        "two writable primaries at once across the clusters"
    );
}
