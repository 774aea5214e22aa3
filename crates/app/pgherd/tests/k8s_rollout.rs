//! A changed pod template rolls the instance pods, as CloudNativePG rolls them, on kube-sim
//! with its process kubelet: a three-instance Cluster's `imageName` moves to another minor
//! and a tablespace is added (created once the primary's pod mounts its volume, its files on
//! every instance's volume) under a writer; the replicas' pods are recreated one at a time, then the primary's after a
//! switchover; every pod ends on the new template, `PodTemplateApplied` is True again, no
//! acknowledged commit is lost and never two instances are writable at once. Then the primary's
//! node is drained (`kubectl drain`: the primary is switched over before its pod is evicted),
//! the Cluster is scaled up to four; a node holding only replicas is drained during a
//! maintenance window without PVC reuse (its replicas replaced elsewhere with new PVCs); it is
//! scaled down to two, as seed 002's runbook does, its storage
//! grown, and it is hibernated and woken (`kubectl cnpg hibernate on|off`), all under the same
//! writer.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::load::HaLoad;
use k8s::{kubelet_available, str_at, Operator, Sim};

const NEW_IMAGE: &str = "ghcr.io/cloudnative-pg/postgresql:15.14";

/// `kubectl drain NODE`, as an administrator runs it, on a thread of its own.
fn start_drain(
    sim: &Sim,
    node: &str,
    timeout_seconds: u32,
) -> std::thread::JoinHandle<std::process::Output> {
    let kubeconfig = sim.kubeconfig();
    let args = [
        "drain".to_string(),
        node.to_string(),
        "--ignore-daemonsets".into(),
        "--delete-emptydir-data".into(),
        format!("--timeout={timeout_seconds}s"),
    ];
    std::thread::spawn(move || {
        std::process::Command::new("kubectl")
            .env("KUBECONFIG", kubeconfig)
            .args(args)
            .output()
            .unwrap()
    })
}

/// The drain `started` completed.
fn drained(started: std::thread::JoinHandle<std::process::Output>, what: &str) {
    let out = started.join().unwrap();
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_new_image_rolls_the_pods_then_a_drain_moves_the_primary_then_scaling() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(3);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.apply("apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: pg\nspec:\n  instances: 3\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  postgresql:\n    synchronous:\n      method: any\n      number: 1\n")
        .unwrap();
    // `kubectl patch cluster pg --type=merge -p PATCH`, as seed 002's runbook patches.
    let patch = |body: &str| {
        sim.kubectl(&["patch", "cluster", "pg", "--type=merge", "-p", body]);
    };
    let healthy = |seconds: u64| {
        sim.eventually("a healthy cluster", seconds, || {
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state") && ready == 3)
                .then_some(c)
        })
    };
    let status = healthy(300);
    let healthy_with = |n: i64, seconds: u64| {
        sim.eventually("a healthy cluster", seconds, || {
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state") && ready == n)
                .then_some(c)
        })
    };
    let primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    let password = sim.secret_value("pg-app", "password");
    let rw = {
        let s = sim.json(&["get", "service", "pg-rw"]).unwrap();
        str_at(&s, "/spec/clusterIP").unwrap().to_string()
    };
    let load = HaLoad::start(&sim, "default", "pg", &rw, &password);
    let uids = |sim: &Sim| -> Vec<(String, String, String)> {
        sim.instance_pods()
            .iter()
            .map(|p| {
                let image = p
                    .pointer("/spec/containers")
                    .and_then(|c| c.as_array())
                    .and_then(|c| c.iter().find(|c| c["name"] == "postgres"))
                    .and_then(|c| c["image"].as_str())
                    .unwrap_or_default()
                    .to_string();
                (
                    str_at(p, "/metadata/name").unwrap().to_string(),
                    str_at(p, "/metadata/uid").unwrap().to_string(),
                    image,
                )
            })
            .collect()
    };
    let before = uids(&sim);
    assert_eq!(before.len(), 3);

    // The same change adds a tablespace: the pods are rolled with its volume, and the primary
    // creates it once its own pod mounts it.
    patch(&format!(
        r#"{{"spec":{{"imageName":"{NEW_IMAGE}","tablespaces":[{{"name":"added","owner":{{"name":"app"}},"storage":{{"size":"1Gi"}}}}]}}}}"#
    ));
    // Rolling: never more than one instance pod missing or being recreated at a time.
    let mut most_missing = 0;
    let done = sim.eventually("every pod on the new template", 300, || {
        load.refresh_ips(&sim);
        let now = uids(&sim);
        most_missing = most_missing.max(3 - now.len());
        let c = sim.json(&["get", "cluster", "pg"])?;
        let applied = c
            .pointer("/status/conditions")?
            .as_array()?
            .iter()
            .any(|c| c["type"] == "PodTemplateApplied" && c["status"] == "True");
        let rolled = now.len() == 3 && now.iter().all(|(_, _, image)| image == NEW_IMAGE);
        (applied && rolled).then_some(now)
    });
    for (name, uid, _) in &before {
        assert!(
            !done.iter().any(|(n, u, _)| n == name && u == uid),
            "{name}'s pod was not recreated"
        );
    }
    assert!(
        most_missing <= 1,
        "{most_missing} instance pods gone at once"
    );
    let status = healthy(180);
    let new_primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    assert_ne!(
        new_primary, primary,
        "the primary's pod is recreated after a switchover, not in place"
    );
    load.flowing(&sim, "the roll");
    sim.eventually("the added tablespace reconciled", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/tablespacesStatus/0/state") == Some("reconciled")).then_some(())
    });
    sim.runtime.block_on(async {
        let c = k8s::connect_soon(&rw, &password)
            .await
            .expect("-rw answers");
        c.batch_execute(
            "CREATE TABLE placed (id int) TABLESPACE added; INSERT INTO placed VALUES (1)",
        )
        .await
        .expect("a table in the added tablespace");
    });
    for (pod, _, _) in &done {
        sim.eventually(&format!("{pod} has the table's tablespace"), 60, || {
            sim.in_postgres(pod, &["ls", "/var/lib/postgresql/tablespaces/added/data"])?
                .contains("PG_15_")
                .then_some(())
        });
    }
    // The data's major is recorded; an image of an older major never reaches the pods (their
    // PostgreSQL could not start on the data; without the webhooks nothing refused the change
    // earlier): the pods stay, the refusal names the field, and setting the image back clears
    // it. (A newer major is an in-place upgrade: tests/k8s_major_upgrade.rs.)
    assert_eq!(
        status.pointer("/status/pgDataImageInfo/majorVersion"),
        Some(&15.into()),
        "{status:#}"
    );
    patch(r#"{"spec":{"imageName":"ghcr.io/cloudnative-pg/postgresql:14.19"}}"#);
    let reason = sim.eventually("the older major refused", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.starts_with("spec.imageName: ghcr.io/cloudnative-pg/postgresql:14.19"))
            .map(str::to_string)
    });
    assert!(
        reason.contains("can't downgrade from major 15 to 14") && reason.contains("keep running"),
        "{reason}"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        uids(&sim),
        done,
        "a pod changed for an image of an older major"
    );
    // The same change adds a tablespace: the pods are rolled with its volume, and the primary
    // creates it once its own pod mounts it.
    patch(&format!(r#"{{"spec":{{"imageName":"{NEW_IMAGE}"}}}}"#));
    sim.eventually("the refusal cleared", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/phaseReason")
            .is_none_or(|r| !r.contains("spec.imageName"))
            .then_some(())
    });
    load.flowing(&sim, "the refused downgrade");

    // A node drain, as an administrator runs it: the primary is switched over to a replica on
    // another node before its pod is evicted (the primary's PDB holds the eviction until then),
    // and the drain completes.
    let primary_node = {
        let pod = sim.json(&["get", "pod", &new_primary]).unwrap();
        str_at(&pod, "/spec/nodeName").unwrap().to_string()
    };
    let drain = start_drain(&sim, &primary_node, 180);
    let moved_to = sim.eventually("the primary off the drained node", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let p = str_at(&c, "/status/currentPrimary")?.to_string();
        (p != new_primary).then_some(p)
    });
    drained(drain, "kubectl drain of the primary's node");
    let pod = sim.json(&["get", "pod", &moved_to]).unwrap();
    assert_ne!(str_at(&pod, "/spec/nodeName"), Some(primary_node.as_str()));
    load.flowing(&sim, "the drain");
    sim.kubectl(&["uncordon", &primary_node]);
    healthy(180);
    let new_primary = moved_to;

    // Scaling as seed 002's runbook does it (`kubectl patch cluster … {"spec":{"instances":N}}`):
    // up to 4 (a new replica cloned from the primary), then down to 2 (the newest replicas go,
    // with their PVCs; never the primary).
    let scale = |n: u32| {
        patch(&format!(r#"{{"spec":{{"instances":{n}}}}}"#));
        sim.eventually(&format!("{n} ready instances"), 240, || {
            load.refresh_ips(&sim);
            let c = sim.json(&["get", "cluster", "pg"])?;
            let ready = c.pointer("/status/readyInstances")?.as_i64()?;
            let pods = sim.json(&["get", "pods", "-l", "cnpg.io/podRole=instance"])?;
            let claims = sim.json(&["get", "pvc", "-l", "cnpg.io/cluster=pg"])?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
                && ready == i64::from(n)
                && pods["items"].as_array()?.len() == n as usize
                // Each instance's PGDATA and tablespace claims.
                && claims["items"].as_array()?.len() == 2 * n as usize)
                .then_some(())
        });
    };
    scale(4);

    // Node maintenance without PVC reuse (`kubectl cnpg maintenance set pg`, no `--reusePVC`,
    // written as `reusePVC: false` as CloudNativePG's plugin writes it): a drained node's
    // replicas are not waited for but replaced, their PVCs deleted, new instances cloned
    // elsewhere; the replicas' budget lets the drain evict one at a time.
    sim.kubectl(&["cnpg", "maintenance", "set", "pg"]);
    let c = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(
        c["spec"]["nodeMaintenanceWindow"],
        serde_json::json!({"inProgress": true, "reusePVC": false})
    );
    let placed = |sim: &Sim| -> Vec<(String, String, String)> {
        sim.instance_pods()
            .iter()
            .map(|p| {
                (
                    str_at(p, "/metadata/name").unwrap_or_default().to_string(),
                    str_at(p, "/spec/nodeName").unwrap_or_default().to_string(),
                    str_at(p, "/metadata/labels/cnpg.io~1instanceRole")
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    };
    let before = placed(&sim);
    let replicas_only = before
        .iter()
        .map(|(_, node, _)| node.clone())
        .find(|node| {
            before
                .iter()
                .filter(|(_, n, _)| n == node)
                .all(|(_, _, role)| role == "replica")
        })
        .expect("a node with replicas only");
    let evicted: Vec<String> = before
        .iter()
        .filter(|(_, node, _)| *node == replicas_only)
        .map(|(name, _, _)| name.clone())
        .collect();
    drained(
        start_drain(&sim, &replicas_only, 240),
        "kubectl drain without PVC reuse",
    );
    sim.eventually("4 ready instances off the drained node", 240, || {
        load.refresh_ips(&sim);
        let c = sim.json(&["get", "cluster", "pg"])?;
        let ready = c.pointer("/status/readyInstances")?.as_i64()?;
        let now = placed(&sim);
        let claims = sim.json(&["get", "pvc", "-l", "cnpg.io/cluster=pg"])?;
        let claim_names: Vec<String> = claims["items"]
            .as_array()?
            .iter()
            .filter_map(|c| str_at(c, "/metadata/name").map(str::to_string))
            .collect();
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
            && ready == 4
            && now.len() == 4
            && now
                .iter()
                .all(|(name, node, _)| *node != replicas_only && !evicted.contains(name))
            && claim_names.len() == 8
            && !claim_names
                .iter()
                .any(|c| evicted.iter().any(|e| c.starts_with(e.as_str()))))
        .then_some(())
    });
    let status = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(
        str_at(&status, "/status/currentPrimary"),
        Some(new_primary.as_str()),
        "replacing replicas moved the primary"
    );
    load.flowing(&sim, "the drain without PVC reuse");
    sim.kubectl(&["cnpg", "maintenance", "unset", "pg"]);
    sim.kubectl(&["uncordon", &replicas_only]);

    scale(2);
    let status = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(
        str_at(&status, "/status/currentPrimary"),
        Some(new_primary.as_str()),
        "scaling down moved the primary"
    );
    load.flowing(&sim, "scaling");
    // Growing the storage: each data PVC is patched to the new size in place (no new pod);
    // shrinking is refused with the claim named.
    patch(r#"{"spec":{"storage":{"size":"2Gi"}}}"#);
    sim.eventually("the PVCs grown to 2Gi", 60, || {
        let claims = sim.json(&[
            "get",
            "pvc",
            "-l",
            "cnpg.io/cluster=pg,cnpg.io/pvcRole=PG_DATA",
        ])?;
        let items = claims["items"].as_array()?;
        (items.len() == 2
            && items
                .iter()
                .all(|c| str_at(c, "/spec/resources/requests/storage") == Some("2Gi")))
        .then_some(())
    });
    patch(r#"{"spec":{"storage":{"size":"1Gi"}}}"#);
    let refused = sim.eventually("the shrink refused", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("cannot shrink"))
            .map(str::to_string)
    });
    assert!(refused.contains("2Gi"), "{refused}");
    patch(r#"{"spec":{"storage":{"size":"2Gi"}}}"#);
    healthy_with(2, 60);

    // `kubectl cnpg restart pg --primary` (seed 002's runbook line): the primary restarts in
    // place, and stays the primary.
    let started_at = |sim: &Sim| -> Option<String> {
        sim.runtime.block_on(async {
            let c = k8s::connect(&rw, &password).await?;
            c.query_one("SELECT pg_postmaster_start_time()::text", &[])
                .await
                .ok()
                .map(|r| r.get(0))
        })
    };
    let before_restart = started_at(&sim).expect("-rw answers");
    sim.kubectl(&["cnpg", "restart", "pg", "--primary"]);
    sim.eventually("the primary restarted in place", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")
            && str_at(&c, "/status/currentPrimary") == Some(new_primary.as_str())
            && started_at(&sim).is_some_and(|t| t != before_restart))
        .then_some(())
    });
    load.flowing(&sim, "the primary's restart");

    // Hibernation, as `kubectl cnpg hibernate on|off` asks for it: every pod goes once its
    // PostgreSQL stopped, the PVCs stay, the primary is kept; waking brings the same primary
    // back first, then the replica.
    let hibernated = |c: &serde_json::Value| -> Option<(String, String)> {
        c.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .find(|c| c["type"] == "cnpg.io/hibernation")
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or_default().to_string(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    sim.kubectl(&["cnpg", "hibernate", "on", "pg"]);
    sim.eventually("the cluster hibernated", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let pods = sim.json(&["get", "pods", "-l", "cnpg.io/podRole=instance"])?;
        (hibernated(&c) == Some(("True".into(), "Hibernated".into()))
            && pods["items"].as_array()?.is_empty())
        .then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let asleep = sim.json(&["get", "cluster", "pg"]).unwrap();
    assert_eq!(
        str_at(&asleep, "/status/currentPrimary"),
        Some(new_primary.as_str())
    );
    let pods = sim
        .json(&["get", "pods", "-l", "cnpg.io/podRole=instance"])
        .unwrap();
    assert!(
        pods["items"].as_array().unwrap().is_empty(),
        "a pod came back"
    );
    let claims = sim
        .json(&["get", "pvc", "-l", "cnpg.io/cluster=pg"])
        .unwrap();
    assert_eq!(
        claims["items"].as_array().unwrap().len(),
        4,
        "the PVCs (data and tablespace) stay"
    );
    let said = sim.kubectl(&["cnpg", "status", "pg"]);
    assert!(said.contains("Hibernat"), "{said}");
    sim.kubectl(&["cnpg", "hibernate", "off", "pg"]);
    let awake = healthy_with(2, 180);
    assert_eq!(
        str_at(&awake, "/status/currentPrimary"),
        Some(new_primary.as_str()),
        "waking failed over"
    );
    assert_eq!(hibernated(&awake), None);
    load.flowing(&sim, "waking");

    // A spec the operator refuses, on a running cluster (volume snapshot backups are not run on
    // Kubernetes yet; no webhook here to refuse them at admission): the last valid spec is held, the refusal
    // is said, and the cluster is still reconciled, also by a restarted operator — a switchover
    // goes through meanwhile.
    patch(r#"{"spec":{"backup":{"volumeSnapshot":{"className":"csi-snapshots"}}}}"#);
    sim.eventually("the refused spec said", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/phaseReason")
            .filter(|r| r.contains("spec.backup.volumeSnapshot"))
            .map(str::to_string)
    });
    // The operator restarts while the spec is refused: the last valid spec was kept in the
    // Cluster's `pg-valid-spec` ConfigMap, so the new process holds the cluster at it as well
    // (without it the cluster was not reconciled at all until its spec was fixed).
    let kept = sim.json(&["get", "configmap", "pg-valid-spec"]).unwrap();
    let kept: serde_json::Value =
        serde_json::from_str(str_at(&kept, "/data/spec.json").unwrap()).unwrap();
    assert!(
        kept["backup"].is_null() && kept["instances"] == 2,
        "not the last valid spec: {kept}"
    );
    drop(operator);
    let _operator = Operator::start(
        &sim,
        "operator-restarted",
        &["--no-webhooks", "--no-leader-election"],
    );
    let replica = awake
        .pointer("/status/instanceNames")
        .and_then(|v| v.as_array())
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .find(|n| *n != new_primary)
        .unwrap()
        .to_string();
    sim.kubectl(&["cnpg", "promote", "pg", &replica]);
    sim.wait_healthy_primary("default", "pg", &replica, 180);
    load.flowing(&sim, "a switchover while the spec is refused");
    patch(r#"{"spec":{"backup":null}}"#);
    sim.eventually("the refusal cleared", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        str_at(&c, "/status/phaseReason")
            .is_none_or(|r| !r.contains("spec.backup.volumeSnapshot"))
            .then_some(())
    });

    load.finish(&sim);
}
