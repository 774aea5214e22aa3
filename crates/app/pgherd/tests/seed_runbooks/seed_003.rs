//! Seed 003's runbook (a homelab archiving WAL to Backblaze B2 through the barman-cloud plugin)
//! on the local platform.

/// Seed 003 walked on the local platform: its "WAL Archiving" manifest as stored in
/// `tests/fixtures/seeds` (the ObjectStore with gzip and AES256, the Cluster's `plugins` entry,
/// PostgreSQL 17.2 as it names it) with only the store's endpoint pointed at moto; then its
/// "Useful commands" (`get cluster`, the `-app` Secret, `get backup`), WAL archived, a backup
/// through the plugin, a switchover under a writer, and "Increase Instances" (2 → 3). Its
/// restore and PITR manifests are ones CloudNativePG itself refuses (`recovery.source:
/// externalCluster` with `externalClusterName`, a top-level `targetTime`): the fixtures keep them
/// as `.invalid.yaml` and `seeds.rs` checks pgherd refuses them on the same fields.
#[test]
fn seed_003_plugin_archiving_runbook() {
    use super::*;
    use pgherd_testkit::local::{connect, Local};
    use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};
    use pgherd_testkit::writer::{missing, prepare, Writer};
    use std::time::Duration;
    const NS: &str = "immich";
    const CLUSTER: &str = "immich-postgres";

    let moto = Moto::start();
    moto.create_bucket("homelab-cnpg-b2");
    let local = Local::new(std::path::Path::new(env!("CARGO_BIN_EXE_pgherd")));
    let files = tempfile::tempdir().unwrap();
    // "Create ExternalSecrets for backup credentials": the Secret they make.
    let credentials = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: b2-cnpg-credentials\n  namespace: {NS}\nstringData:\n  AWS_ACCESS_KEY_ID: {ACCESS_KEY}\n  AWS_SECRET_ACCESS_KEY: {SECRET_KEY}\n"
    );
    let manifest = fixture("003-cluster-wal-archiving-plugin.yaml")
        .replace("https://s3.us-west-000.backblazeb2.com", &moto.endpoint());
    let stack = write(
        files.path(),
        "immich.yaml",
        &format!("{credentials}---\n{manifest}"),
    );
    local.run_ok(&["up", "-f", &stack, "--timeout-seconds", "300"]);
    healthy(&local, NS, CLUSTER, "the seed's cluster", 2);

    // "Useful commands".
    let listed = run_ns(&local, NS, &["get", "cluster"]);
    assert!(listed.contains(CLUSTER), "{listed}");
    let app_password = secret(&local, NS, "immich-postgres-app", "password");
    assert!(!app_password.is_empty());
    let s = status(&local, NS, CLUSTER);
    let version = socket_query(&local, NS, CLUSTER, "postgres", "SHOW server_version_num");
    assert!(version.starts_with("17"), "17.2 asked for, {version} runs");

    // A writer through -rw for the rest of the runbook.
    let rw = s["endpoints"]["rw"].as_str().expect("rw").to_string();
    let app = config(&rw, "app", &app_password, "app");
    let rt = pgherd_testkit::runtime();
    rt.block_on(prepare(&app)).unwrap();
    let writer = Writer::start("seed-003", app.clone(), Duration::from_millis(10));
    commits_again(&local, &writer, "the start");

    // WAL archived through the plugin's ObjectStore.
    wait_status(
        &local,
        NS,
        CLUSTER,
        "ContinuousArchiving",
        Duration::from_secs(120),
        |s| {
            s["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "ContinuousArchiving" && c["status"] == "True")
            })
        },
    );
    // A backup through the plugin (what the seed's ScheduledBackup takes), then `get backup`.
    run_ns(
        &local,
        NS,
        &[
            "backup",
            CLUSTER,
            "--backup-name",
            "immich-now",
            "--method",
            "plugin",
            "--plugin-name",
            "barman-cloud.cloudnative-pg.io",
        ],
    );
    wait_backup(&local, NS, "immich-now", Duration::from_secs(300));
    let backups = run_ns(&local, NS, &["get", "backup"]);
    assert!(backups.contains("immich-now"), "{backups}");

    // A switchover under the writer, then "Increase Instances".
    switch_over(&local, NS, CLUSTER, 1, 2, &writer);
    let scaled = write(
        files.path(),
        "immich-3.yaml",
        &format!(
            "{credentials}---\n{}",
            manifest.replace("instances: 2", "instances: 3")
        ),
    );
    local.run_ok(&["apply", "-f", &scaled]);
    healthy(&local, NS, CLUSTER, "three instances", 3);
    commits_again(&local, &writer, "the scale-up");

    let report = writer.stop();
    let rw = status(&local, NS, CLUSTER)["endpoints"]["rw"]
        .as_str()
        .expect("rw")
        .to_string();
    let lost = rt.block_on(async {
        let c = connect(&config(&rw, "app", &app_password, "app"))
            .await
            .unwrap();
        missing(&c, &report).await.unwrap()
    });
    assert!(lost.is_empty(), "acknowledged commits lost: {lost:?}");
}
