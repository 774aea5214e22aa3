//! CloudNativePG's distributed topology on Kubernetes (kube-sim with its process kubelet, two
//! nodes): `east` is the primary cluster, `west` a copy of it (`bootstrap.pg_basebackup`) that
//! follows it; each names the other in `externalClusters` with the other's `streaming_replica`
//! certificate, and both share the application owner's Secret. A writer commits to `east`;
//! `east` is demoted (`replica.primary: west`, applied with `kubectl`): its primary stops
//! cleanly and `status.demotionToken` appears; `west` is promoted with that token. Every commit
//! `east` acknowledged is in `west`, a checker sweeping the pods of both clusters never sees two
//! writable at once, `west` records `status.lastPromotionToken`, and `east` replays `west`'s new
//! writes as a read-only replica cluster.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::load::{WritableChecker, Writer};
use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

const PASSWORD: &str = "shared-app-password";

/// `name` in the topology: `primary` is the primary cluster, `other` its source.
fn member(name: &str, other: &str, primary: &str, token: Option<&str>) -> String {
    let bootstrap = if name == "west" {
        "    pg_basebackup:\n      source: east\n      secret:\n        name: shared-app\n"
    } else {
        "    initdb:\n      secret:\n        name: shared-app\n"
    };
    let token = token
        .map(|t| format!("    promotionToken: {t}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: {name}\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  bootstrap:\n{bootstrap}  replica:\n    self: {name}\n    primary: {primary}\n    source: {other}\n{token}  externalClusters:\n    - name: {other}\n      connectionParameters:\n        host: {other}-rw\n        user: streaming_replica\n        dbname: postgres\n        sslmode: verify-full\n      sslKey:\n        name: {other}-replication\n        key: tls.key\n      sslCert:\n        name: {other}-replication\n        key: tls.crt\n      sslRootCert:\n        name: {other}-ca\n        key: ca.crt\n"
    )
}

fn writable(sim: &Sim, cluster: &str) -> Option<bool> {
    let ip = sim.service_ip("default", &format!("{cluster}-rw"));
    sim.runtime.block_on(async {
        let c = k8s::connect(&ip, PASSWORD).await?;
        let row = c.query_one("SELECT pg_is_in_recovery()", &[]).await.ok()?;
        Some(!row.get::<_, bool>(0))
    })
}

fn pod_ips(sim: &Sim) -> BTreeSet<String> {
    let pods = sim
        .json(&["get", "pods", "-l", "cnpg.io/podRole=instance"])
        .unwrap();
    pods["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| str_at(p, "/status/podIP").map(str::to_string))
        .collect()
}

#[test]
fn a_primary_cluster_hands_over_to_another_with_a_demotion_token() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let _operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: shared-app\ntype: kubernetes.io/basic-auth\nstringData:\n  username: app\n  password: {PASSWORD}\n"
    ))
    .unwrap();
    sim.apply(&member("east", "west", "east", None)).unwrap();
    let healthy = |cluster: &str| {
        sim.eventually(&format!("{cluster} healthy"), 300, || {
            let c = sim.json(&["get", "cluster", cluster])?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state")).then_some(c)
        })
    };
    healthy("east");
    let east_rw = sim.service_ip("default", "east-rw");
    sim.runtime.block_on(async {
        let c = connect_soon(&east_rw, PASSWORD)
            .await
            .expect("east answers");
        c.batch_execute("CREATE TABLE ledger (id bigint PRIMARY KEY)")
            .await
            .unwrap();
    });
    let writer = Writer::start(east_rw.clone(), PASSWORD.to_string());
    assert!(writer.wait_for_more(20, 60), "no commits to east");
    sim.apply(&member("west", "east", "east", None)).unwrap();
    healthy("west");
    let west_writable = sim.eventually("west answering", 60, || writable(&sim, "west"));
    assert!(!west_writable, "west accepts writes");
    let ips = Arc::new(Mutex::new(pod_ips(&sim)));
    let checker = WritableChecker::start(ips.clone(), PASSWORD.to_string());

    // Demote east.
    sim.apply(&member("east", "west", "west", None)).unwrap();
    let token = sim.eventually("east's demotion token", 120, || {
        let c = sim.json(&["get", "cluster", "east"])?;
        str_at(&c, "/status/demotionToken").map(str::to_string)
    });
    let acked = writer.stop();
    assert!(!acked.is_empty());

    // Promote west with it.
    sim.apply(&member("west", "east", "west", Some(&token)))
        .unwrap();
    sim.eventually("west writable", 120, || {
        writable(&sim, "west").filter(|w| *w)
    });
    sim.eventually("west's lastPromotionToken", 60, || {
        let c = sim.json(&["get", "cluster", "west"])?;
        (str_at(&c, "/status/lastPromotionToken") == Some(token.as_str())).then_some(())
    });
    let west_rw = sim.service_ip("default", "west-rw");
    let lost = sim
        .runtime
        .block_on(k8s::load::lost(&west_rw, PASSWORD, &acked));
    assert!(
        lost.is_empty(),
        "{} commits east acknowledged are missing from west",
        lost.len()
    );

    // east follows west's new timeline, read-only.
    sim.runtime.block_on(async {
        let c = connect_soon(&west_rw, PASSWORD).await.unwrap();
        c.batch_execute("INSERT INTO ledger VALUES (-7)")
            .await
            .unwrap();
    });
    sim.eventually("east replaying west's writes", 120, || {
        sim.runtime.block_on(async {
            let c = k8s::connect(&east_rw, PASSWORD).await?;
            let row = c
                .query_one(
                    "SELECT pg_is_in_recovery(), EXISTS (SELECT 1 FROM ledger WHERE id = -7)",
                    &[],
                )
                .await
                .ok()?;
            (row.get::<_, bool>(0) && row.get::<_, bool>(1)).then_some(())
        })
    });
    let most = checker.stop();
    assert!(
        most <= 1,
        "{most} writable primaries at once across the clusters"
    );
}
