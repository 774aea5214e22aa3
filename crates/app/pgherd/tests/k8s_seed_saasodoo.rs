//! Seed 002 (SaaSOdoo's HA cluster) on Kubernetes: kube-sim with three nodes and its process
//! kubelet, `pgherd operator`, the real `kubectl` with pgherd as `kubectl-cnpg`. The seed's
//! stack (`tests/seed_stacks/saasodoo.rs`: role Secrets, a 3-instance Cluster (PostgreSQL 15 here, see below)
//! with 1–2 synchronous standbys and a PodMonitor, five Databases, a 2-instance transaction
//! PgBouncer) is applied with `kubectl apply`, then its runbook's commands run as written:
//! `kubectl wait`, `kubectl get cluster,pooler,database`, the pods with their `role` label, the
//! primary found by its labels, `\l`, `\du` and the replication query through `kubectl exec`,
//! the PodMonitor, the events, `kubectl cnpg promote`, the annotation it mentions, `kubectl
//! cnpg restart` and `restart --primary`, and the cleanup. Each `kubectl cnpg` line is checked
//! by its effect: the named instance is primary, every PostgreSQL restarted, only the primary
//! restarted. A writer commits through the pooler's Service meanwhile and a checker asks every
//! instance whether it is writable: nothing acknowledged lost, never two writable at once.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;
mod seed_stacks;

use k8s::load::HaLoad;
use k8s::{kubelet_available, str_at, Operator, Sim};
use seed_stacks::saasodoo::{self as stack, CLUSTER, DATABASES, NAMESPACE as NS, POOLER, ROLES};
use std::collections::BTreeMap;

/// The Prometheus Operator's PodMonitor CRD, reduced to what the API server needs to serve the
/// kind (the seed's cluster has `enablePodMonitor: true`; its runbook lists PodMonitors).
const POD_MONITOR_CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: podmonitors.monitoring.coreos.com\nspec:\n  group: monitoring.coreos.com\n  scope: Namespaced\n  names:\n    kind: PodMonitor\n    listKind: PodMonitorList\n    plural: podmonitors\n    singular: podmonitor\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n";

/// `kubectl ARGS -n saasodoo`, which must succeed.
fn ns(sim: &Sim, args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.extend(["-n", NS]);
    sim.kubectl(&all)
}

/// The seed's "Get primary pod", as written.
fn primary_pod(sim: &Sim) -> String {
    sim.kubectl(&[
        "get",
        "pods",
        "-n",
        "saasodoo",
        "-l",
        "cnpg.io/cluster=postgres-cluster,role=primary",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ])
}

/// `kubectl exec -n saasodoo POD -- psql -U postgres ARGS`, if it succeeds.
fn psql(sim: &Sim, pod: &str, args: &[&str]) -> Option<String> {
    let mut all = vec!["exec", "-n", NS, pod, "--", "psql", "-U", "postgres"];
    all.extend(args);
    let out = sim.kubectl_output(&all, None);
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each instance's PostgreSQL start time (absent while an instance is down).
fn started(sim: &Sim) -> BTreeMap<String, String> {
    (1..=3)
        .map(|n| format!("{CLUSTER}-{n}"))
        .filter_map(|pod| {
            let t = psql(sim, &pod, &["-Atc", "SELECT pg_postmaster_start_time()"])?;
            Some((pod, t.trim().to_string()))
        })
        .collect()
}

fn cluster_status(sim: &Sim) -> Option<serde_json::Value> {
    sim.json(&["get", "cluster", "-n", NS, CLUSTER])
}

fn healthy(c: &serde_json::Value) -> bool {
    str_at(c, "/status/phase") == Some("Cluster in healthy state")
        && c.pointer("/status/readyInstances").and_then(|v| v.as_i64()) == Some(3)
}

#[test]
fn seed_002_runbook_on_kubernetes() {
    if !kubelet_available() {
        return;
    }
    let sim = Sim::with_nodes(3);
    sim.install_crds();
    sim.apply(POD_MONITOR_CRD).unwrap();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    sim.kubectl(&["create", "namespace", NS]);

    // "Step 2: Deploy Secrets" and its check.
    sim.apply(&stack::secrets()).unwrap();
    let listed = ns(&sim, &["get", "secrets"]);
    assert_eq!(listed.matches("cnpg-").count(), ROLES.len(), "{listed}");

    // "Step 3: Deploy PostgreSQL Cluster", waited for as written. The image is 15, not the
    // seed's 18.1: this machine's only PostgreSQL 18 with pg_basebackup (PyPI's) is built
    // without SSL, and on Kubernetes a replica clones over TLS with its client certificate
    // (CloudNativePG's images all have SSL). The local walk of this seed runs 18.1.
    let cluster = stack::cluster(3).replace("postgresql:18.1", "postgresql:15");
    sim.apply(&cluster).unwrap();
    sim.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "--timeout=600s",
        "cluster/postgres-cluster",
        "-n",
        "saasodoo",
    ]);
    let table = sim.kubectl(&["get", "cluster", "postgres-cluster", "-n", "saasodoo"]);
    eprintln!("--- kubectl get cluster postgres-cluster -n saasodoo\n{table}");
    assert!(
        table.contains("INSTANCES") && table.contains("Cluster in healthy state"),
        "{table}"
    );

    // "Step 4: Create Databases": each applied by the primary.
    sim.apply(&stack::databases()).unwrap();
    sim.eventually("every Database applied", 120, || {
        let list = sim.json(&["get", "database", "-n", NS])?;
        let items = list["items"].as_array()?;
        (items.len() == DATABASES.len()
            && items
                .iter()
                .all(|d| d.pointer("/status/applied") == Some(&true.into())))
        .then_some(())
    });
    let listed = sim.kubectl(&["get", "database", "-n", "saasodoo"]);
    for (db, _) in DATABASES {
        assert!(listed.contains(db), "{listed}");
    }

    // "Step 6: Enable PgBouncer Pooler": its two pods, by the seed's selector.
    sim.apply(&stack::pooler()).unwrap();
    sim.eventually("the pooler's 2 instances active", 240, || {
        let p = sim.json(&["get", "pooler", "-n", NS, POOLER])?;
        (p.pointer("/status/instances")?.as_i64()? == 2
            && str_at(&p, "/status/phase") == Some("active"))
        .then_some(())
    });
    let pods = sim.kubectl(&[
        "get",
        "pods",
        "-n",
        "saasodoo",
        "-l",
        "cnpg.io/poolerName=postgres-cluster-pooler-rw",
    ]);
    assert_eq!(
        pods.matches("postgres-cluster-pooler-rw-").count(),
        2,
        "{pods}"
    );

    // "Step 8: Verify Installation" and "Cluster Health".
    let all = sim.kubectl(&["get", "cluster,pooler,database", "-n", "saasodoo"]);
    assert!(
        all.contains("cluster.postgresql.cnpg.io/postgres-cluster")
            && all.contains("pooler.postgresql.cnpg.io/postgres-cluster-pooler-rw")
            && all.contains("database.postgresql.cnpg.io/auth"),
        "{all}"
    );
    let roles = sim.kubectl(&[
        "get",
        "pods",
        "-n",
        "saasodoo",
        "-L",
        "role",
        "-l",
        "cnpg.io/cluster=postgres-cluster",
    ]);
    assert_eq!(roles.matches("primary").count(), 1, "{roles}");
    assert_eq!(roles.matches("replica").count(), 2, "{roles}");
    let described = sim.kubectl(&["describe", "cluster", "postgres-cluster", "-n", "saasodoo"]);
    assert!(described.contains("Current Primary:"), "{described}");

    // "Database Verification" on the primary found as the seed finds it.
    let primary = primary_pod(&sim);
    assert_eq!(primary, format!("{CLUSTER}-1"));
    let databases = psql(&sim, &primary, &["-c", "\\l"]).unwrap();
    for (db, owner) in DATABASES {
        assert!(
            databases.contains(db) && databases.contains(owner),
            "{databases}"
        );
    }
    let users = psql(&sim, &primary, &["-c", "\\du"]).unwrap();
    for (role, _) in ROLES {
        assert!(users.contains(role), "{users}");
    }
    // "Replication Status": two synchronous standbys.
    let replication = psql(
        &sim,
        &primary,
        &[
            "-c",
            "SELECT application_name, state, sync_state,
   pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) AS lag_bytes
   FROM pg_stat_replication;",
        ],
    )
    .unwrap();
    let synchronous = replication
        .lines()
        .filter(|l| l.contains("streaming") && (l.contains("quorum") || l.contains("sync")))
        .count();
    assert_eq!(synchronous, 2, "{replication}");

    // "Monitoring": the Cluster's PodMonitor selects its instances.
    let monitor = sim
        .json(&["get", "podmonitor", "-n", NS, CLUSTER])
        .expect("the Cluster's PodMonitor");
    assert_eq!(
        str_at(&monitor, "/spec/selector/matchLabels/cnpg.io~1cluster"),
        Some(CLUSTER)
    );

    // `kubectl cnpg status` (not in the seed's runbook; docs/kubernetes.md shows this output).
    let status = ns(&sim, &["cnpg", "status", CLUSTER]);
    eprintln!("--- kubectl cnpg status postgres-cluster -n saasodoo\n{status}");
    assert!(
        status.contains("Cluster in healthy state") && status.contains("postgres-cluster-3"),
        "{status}"
    );

    // A service writes through the pooler for the operations.
    let password = sim.app_password(NS, CLUSTER);
    let rw = sim.service_ip(NS, "postgres-cluster-rw");
    let through_pooler = sim.service_ip(NS, POOLER);
    let load = HaLoad::start_via(&sim, NS, CLUSTER, &rw, &through_pooler, &password);

    // "Manual Failover (Switchover)", as written.
    sim.kubectl(&[
        "cnpg",
        "promote",
        "postgres-cluster",
        "postgres-cluster-2",
        "-n",
        "saasodoo",
    ]);
    sim.wait_healthy_primary(NS, CLUSTER, "postgres-cluster-2", 180);
    sim.eventually("the role label follows", 60, || {
        (primary_pod(&sim) == "postgres-cluster-2").then_some(())
    });
    load.flowing(&sim, "the switchover");
    let events = sim.kubectl(&[
        "get",
        "events",
        "-n",
        "saasodoo",
        "--field-selector",
        "involvedObject.name=postgres-cluster",
    ]);
    eprintln!("--- kubectl get events … involvedObject.name=postgres-cluster\n{events}");
    assert!(events.contains("SwitchoverCompleted"), "{events}");
    // "Or use annotation": accepted as any annotation is (CloudNativePG reads
    // spec.primaryUpdateMethod, not this annotation; neither does pgherd).
    sim.kubectl(&[
        "annotate",
        "cluster",
        "postgres-cluster",
        "-n",
        "saasodoo",
        "cnpg.io/primaryUpdateMethod=switchover",
    ]);

    // "Rolling Restart": every PostgreSQL restarts, the cluster healthy again.
    let before = started(&sim);
    assert_eq!(before.len(), 3, "{before:?}");
    sim.kubectl(&["cnpg", "restart", "postgres-cluster", "-n", "saasodoo"]);
    sim.eventually("every instance restarted", 360, || {
        let now = started(&sim);
        let c = cluster_status(&sim)?;
        (healthy(&c) && now.len() == 3 && now.iter().all(|(pod, t)| before.get(pod) != Some(t)))
            .then_some(())
    });
    load.flowing(&sim, "the rolling restart");

    // "Restart only primary": in place, the same primary, the standbys untouched.
    let primary = primary_pod(&sim);
    let before = started(&sim);
    sim.kubectl(&[
        "cnpg",
        "restart",
        "postgres-cluster",
        "--primary",
        "-n",
        "saasodoo",
    ]);
    let after = sim.eventually("the primary restarted", 180, || {
        let now = started(&sim);
        let c = cluster_status(&sim)?;
        (healthy(&c) && now.len() == 3 && now.get(&primary) != before.get(&primary)).then_some(now)
    });
    assert_eq!(primary_pod(&sim), primary, "the primary moved");
    for (pod, t) in &after {
        if *pod != primary {
            assert_eq!(before.get(pod), Some(t), "{pod} restarted too");
        }
    }
    load.flowing(&sim, "the primary's restart");
    load.finish(&sim);

    // "Troubleshooting": the primary's log.
    let logs = sim.kubectl(&["logs", "-n", "saasodoo", &primary, "--tail=100"]);
    assert!(!logs.is_empty());

    // "Cleanup", as written: the Cluster's pods go, then the other objects.
    sim.kubectl(&["delete", "cluster", "postgres-cluster", "-n", "saasodoo"]);
    sim.eventually("the instances gone", 120, || {
        let pods = sim.json(&[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "cnpg.io/cluster=postgres-cluster,cnpg.io/podRole=instance",
        ])?;
        pods["items"].as_array()?.is_empty().then_some(())
    });
    sim.kubectl(&["delete", "database", "--all", "-n", "saasodoo"]);
    sim.kubectl(&[
        "delete",
        "pooler",
        "postgres-cluster-pooler-rw",
        "-n",
        "saasodoo",
    ]);
    sim.kubectl(&[
        "delete",
        "secret",
        "-n",
        "saasodoo",
        "-l",
        "app.kubernetes.io/name=postgres",
    ]);
    let left = sim.kubectl(&["get", "secrets", "-n", "saasodoo"]);
    assert!(!left.contains("cnpg-"), "{left}");
    assert!(
        !operator.logged().contains(&stack::password("auth_service")),
        "a role's password reached the operator's log"
    );
}
