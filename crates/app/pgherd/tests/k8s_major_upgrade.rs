//! In-place major upgrades on Kubernetes, as CloudNativePG 1.26+ runs them, on kube-sim with its
//! process kubelet: a two-instance Cluster on PostgreSQL 15, its WAL on a volume of its own
//! (`walStorage`), with a writer through `-rw`.
//!
//! First its `imageName` names a major whose image cannot upgrade (16 here has no `pg_upgrade`):
//! every pod is deleted, the Job `pg-1-major-upgrade` fails, the cluster runs 15 again on its
//! unchanged data (its primary first, no failover) and says why in `phaseReason`. Then an
//! image that cannot be pulled: the Job waits, `phaseReason` says for what, and the image set
//! back before the Job ran deletes it and runs 15 again. Then, scaled
//! to one instance, 18: the pod is deleted again, the Job copies PostgreSQL 15 from the old
//! image and runs `pg_upgrade` on the primary's volume, the primary starts on 18,
//! `status.pgDataImageInfo` says 18, the Job is gone and, once healthy, the old data is removed
//! from the volume. Every commit acknowledged before and after is there, and never two
//! instances were writable at once (writes are refused while the cluster is down: the upgrade
//! is offline, as CloudNativePG's).
//!
//! One instance for 18 because this machine's only complete PostgreSQL 18 tool set (PyPI's) has
//! no TLS, and a replica on Kubernetes clones over TLS (`verify-ca`): its `pg_basebackup` would
//! refuse. A CloudNativePG 18 image has a TLS-capable one; the replicas' set-aside and clone
//! after an upgrade run in `tests/local_upgrade.rs` (three instances).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::load::HaLoad;
use k8s::{kubelet_available, str_at, Operator, Sim};

const CLUSTER: &str = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 2\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  walStorage:\n    size: 1Gi\n";
const UPGRADING: &str = "Upgrading Postgres major version";

fn has_postgres(major: u32) -> bool {
    pgherd_kube_sim::kubelet::images::postgres_home(major).is_some()
}

#[test]
fn a_new_major_upgrades_the_data_in_place_and_a_failed_upgrade_changes_nothing() {
    if !kubelet_available() || !has_postgres(16) || !has_postgres(18) {
        eprintln!("skipped: needs kube-sim's kubelet and PostgreSQL 15, 16 and 18");
        return;
    }
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let _operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.apply(CLUSTER).unwrap();
    let healthy_on = |major: i64, instances: i64, seconds: u64| {
        sim.eventually(&format!("a healthy cluster on {major}"), seconds, || {
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            let data = c
                .pointer("/status/pgDataImageInfo/majorVersion")?
                .as_i64()?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
                && ready == instances
                && data == major)
                .then_some(c)
        })
    };
    healthy_on(15, 2, 300);
    let password = sim.secret_value("pg-app", "password");
    let rw = sim.service_ip("default", "pg-rw");
    let load = HaLoad::start(&sim, "default", "pg", &rw, &password);
    let patch_image = |image: &str| {
        let body = format!("{{\"spec\":{{\"imageName\":\"{image}\"}}}}");
        sim.kubectl(&["patch", "cluster", "pg", "--type=merge", "-p", &body]);
    };

    // 16: the Job fails (no pg_upgrade for 16 here); nothing changes but the reason.
    patch_image("ghcr.io/cloudnative-pg/postgresql:16");
    sim.eventually("the upgrade under way", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/phase") == Some(UPGRADING)).then_some(())
    });
    let failed = sim.eventually("the failed upgrade said", 300, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let reason = str_at(&c, "/status/phaseReason")?.to_string();
        reason
            .contains("major upgrade from 15 to 16 failed")
            .then_some(reason)
    });
    assert!(
        failed.contains("no complete PostgreSQL 16 tool set"),
        "the reason says why: {failed}"
    );
    let job = sim.json(&["get", "job", "pg-1-major-upgrade"]).unwrap();
    assert_eq!(
        str_at(&job, "/metadata/labels/cnpg.io~1jobRole"),
        Some("major-upgrade")
    );
    // Back on 15, the data untouched: the pods run the old image again, the primary first
    // and still the primary (no failover for pods deleted on purpose).
    let running_15 = || {
        sim.eventually("the cluster running 15 again", 300, || {
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            let pods = sim.instance_pods();
            let old_image = pods.len() == 2
                && pods.iter().all(|p| {
                    p.pointer("/spec/containers/0/image")
                        .and_then(|i| i.as_str())
                        == Some("ghcr.io/cloudnative-pg/postgresql:15")
                });
            (ready == 2 && old_image).then_some(c)
        })
    };
    let back = running_15();
    assert_eq!(str_at(&back, "/status/currentPrimary"), Some("pg-1"));
    load.flowing(&sim, "the failed upgrade");

    // An image that cannot be pulled: the Job waits and the reason says for what; set back
    // before the Job ran, the Job goes and the cluster runs 15 again.
    const UNPULLABLE: &str = "registry.invalid/unreachable/postgres:17";
    patch_image(UNPULLABLE);
    let waiting = sim.eventually("the Job's wait said", 180, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let reason = str_at(&c, "/status/phaseReason")?.to_string();
        (str_at(&c, "/status/phase") == Some(UPGRADING) && reason.contains(" waits: "))
            .then_some(reason)
    });
    println!("waiting: {waiting}");
    assert!(
        waiting.contains(UNPULLABLE)
            && (waiting.contains("ErrImagePull") || waiting.contains("ImagePullBackOff"))
            && waiting.contains("set the image back"),
        "{waiting}"
    );
    patch_image("ghcr.io/cloudnative-pg/postgresql:15");
    let back = running_15();
    assert_eq!(str_at(&back, "/status/currentPrimary"), Some("pg-1"));
    assert_eq!(
        back.pointer("/status/pgDataImageInfo/majorVersion")
            .and_then(|m| m.as_i64()),
        Some(15)
    );
    sim.eventually("the waiting Job gone", 60, || {
        sim.json(&["get", "job", "pg-1-major-upgrade"])
            .is_none()
            .then_some(())
    });
    load.flowing(&sim, "the upgrade given up before it ran");

    // One instance (see above), then 18: upgraded in place.
    sim.kubectl(&[
        "patch",
        "cluster",
        "pg",
        "--type=merge",
        "-p",
        r#"{"spec":{"instances":1}}"#,
    ]);
    sim.eventually("one instance left", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (sim.instance_pods().len() == 1 && c.pointer("/status/instances")?.as_i64()? == 1)
            .then_some(())
    });
    patch_image("ghcr.io/cloudnative-pg/postgresql:18");
    sim.eventually("the upgrade under way", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/phase") == Some(UPGRADING)
            && c.pointer("/status/targetPgDataImageInfo/majorVersion")?
                .as_i64()?
                == 18)
            .then_some(())
    });
    let upgraded = healthy_on(18, 1, 600);
    assert_eq!(
        str_at(&upgraded, "/status/pgDataImageInfo/image"),
        Some("ghcr.io/cloudnative-pg/postgresql:18")
    );
    assert!(upgraded.pointer("/status/targetPgDataImageInfo").is_none());
    load.flowing(&sim, "the upgrade");
    let version: i32 = sim.runtime.block_on(async {
        let c = k8s::connect_soon(&rw, &password).await.unwrap();
        let row = c
            .query_one("SELECT current_setting('server_version_num')::int", &[])
            .await
            .unwrap();
        row.get(0)
    });
    assert!(version >= 180_000, "server_version_num {version}");
    load.finish(&sim);
    sim.eventually("the Job removed once done", 60, || {
        let jobs = sim.json(&["get", "jobs", "-l", "cnpg.io/jobRole=major-upgrade"])?;
        jobs["items"].as_array()?.is_empty().then_some(())
    });
    assert_eq!(str_at(&upgraded, "/status/currentPrimary"), Some("pg-1"));
    // Back as from hibernation, and awake now: no condition left to hold a later failover.
    let conditions = upgraded.pointer("/status/conditions").unwrap().to_string();
    assert!(!conditions.contains("cnpg.io/hibernation"), "{conditions}");
    let events = sim.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "reason=MajorUpgradeCompleted",
    ]);
    assert!(events.contains("Upgraded to PostgreSQL 18"), "{events}");
    // Once healthy, the old data goes from the volumes (its WAL from the WAL volume).
    sim.eventually("the old data removed", 120, || {
        let data = sim.in_postgres("pg-1", &["ls", "/var/lib/postgresql/data"])?;
        let wal = sim.in_postgres("pg-1", &["ls", "/var/lib/postgresql/wal"])?;
        (!data.contains("pgdata.major-15") && wal.split_whitespace().eq(["pg_wal"])).then_some(())
    });
    let link = sim
        .in_postgres(
            "pg-1",
            &["readlink", "/var/lib/postgresql/data/pgdata/pg_wal"],
        )
        .unwrap();
    assert_eq!(
        link.trim(),
        "/var/lib/postgresql/wal/pg_wal",
        "WAL on its volume"
    );
}
