//! Backups and managed roles on Kubernetes, end to end on kube-sim with its process kubelet
//! and a real S3-compatible server (moto): a two-instance Cluster with a managed role whose
//! password is in a Secret and `spec.backup.barmanObjectStore`; the role logs in with that
//! password; WAL reaches the bucket (`ContinuousArchiving` True); `kubectl cnpg backup` makes
//! a Backup that the operator has an instance take over the instance protocol, completed with
//! CloudNativePG's status fields and found in the object store's catalog; the Cluster's
//! status records it; a Database object is created and, deleted, dropped; two tablespaces
//! (one temporary) on volumes of their own, a table in one seen on the replica's volume and
//! restored onto the recovered clusters'; new Clusters recover from the Backup and from the store
//! (`externalClusters`), and one is cloned from the running cluster (`bootstrap.pg_basebackup`
//! with the replication certificate) and a replica cluster follows it through its object store
//! (`replica.enabled`: restored, then a read-only standby, archiving to its own store, backed
//! up there and that backup restored); a ScheduledBackup with `immediate` makes one too. A concurrent writer runs throughout and loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
mod k8s;

use k8s::load::Writer;
use k8s::{connect_soon, kubelet_available, str_at, Operator, Sim};
use pgherd_testkit::moto::{Moto, ACCESS_KEY, SECRET_KEY};
use std::time::Duration;

#[test]
fn a_cluster_on_kubernetes_archives_backs_up_recovers_and_manages_roles_and_databases() {
    if !kubelet_available() {
        return;
    }
    let moto = Moto::start();
    moto.create_bucket("backups");
    let sim = Sim::with_nodes(2);
    sim.install_crds();
    let operator = Operator::start(&sim, "operator", &["--no-webhooks", "--no-leader-election"]);
    let manifest = sim.dir.path().join("pg.yaml");
    std::fs::write(
        &manifest,
        format!(
            r#"apiVersion: v1
kind: Secret
metadata:
  name: store-creds
stringData:
  ACCESS_KEY_ID: {ACCESS_KEY}
  ACCESS_SECRET_KEY: {SECRET_KEY}
---
apiVersion: v1
kind: Secret
type: kubernetes.io/basic-auth
metadata:
  name: reporting-password
stringData:
  username: reporting
  password: "it's-a-s3cret"
---
apiVersion: postgresql.cnpg.io/v1
kind: Cluster
metadata:
  name: pg
spec:
  instances: 2
  imageName: ghcr.io/cloudnative-pg/postgresql:15
  storage:
    size: 1Gi
  walStorage:
    size: 1Gi
  tablespaces:
    - name: reports
      owner:
        name: app
      storage:
        size: 1Gi
    - name: scratch
      temporary: true
      storage:
        size: 1Gi
  managed:
    roles:
      - name: reporting
        login: true
        inRoles: [pg_read_all_data]
        passwordSecret:
          name: reporting-password
  backup:
    retentionPolicy: 30d
    barmanObjectStore:
      destinationPath: s3://backups/
      endpointURL: {endpoint}
      s3Credentials:
        accessKeyId:
          name: store-creds
          key: ACCESS_KEY_ID
        secretAccessKey:
          name: store-creds
          key: ACCESS_SECRET_KEY
"#,
            endpoint = moto.endpoint()
        ),
    )
    .unwrap();
    sim.kubectl(&["apply", "-f", manifest.to_str().unwrap()]);
    let status = sim.eventually("a healthy cluster", 300, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let ready = c.pointer("/status/readyInstances")?.as_i64()?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state") && ready == 2).then_some(c)
    });
    assert!(
        str_at(&status, "/status/phaseReason").is_none(),
        "{status:#}"
    );
    // walStorage: each instance's WAL on its own PVC, PGDATA's pg_wal linking there (the
    // primary made by initdb, the replica by a clone).
    for instance in ["pg-1", "pg-2"] {
        assert!(sim
            .json(&["get", "pvc", &format!("{instance}-wal")])
            .is_some());
        let link = sim
            .in_postgres(
                instance,
                &["readlink", "/var/lib/postgresql/data/pgdata/pg_wal"],
            )
            .unwrap_or_default();
        assert_eq!(link.trim(), "/var/lib/postgresql/wal/pg_wal", "{instance}");
    }
    let rw = sim.json(&["get", "service", "pg-rw"]).unwrap();
    let rw = str_at(&rw, "/spec/clusterIP").unwrap().to_string();
    let password = sim.secret_value("pg-app", "password");
    sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        c.batch_execute("CREATE TABLE ledger (id bigint PRIMARY KEY)")
            .await
            .unwrap();
    });
    let writer = Writer::start(rw.clone(), password.clone());
    assert!(writer.wait_for_more(20, 60), "no commits through -rw");

    // Tablespaces: each on its own PVC, created by the primary with its owner; the temporary
    // one in temp_tablespaces; a table placed in one is on the replica's volume too.
    sim.eventually("both tablespaces reconciled", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let states = c.pointer("/status/tablespacesStatus")?.as_array()?.clone();
        (states.len() == 2
            && states
                .iter()
                .all(|t| str_at(t, "/state") == Some("reconciled")))
        .then_some(())
    });
    let (location, temporary) = sim.runtime.block_on(async {
        let c = connect_soon(&rw, &password).await.expect("-rw answers");
        c.batch_execute(
            "CREATE TABLE archive (id int) TABLESPACE reports; \
             INSERT INTO archive SELECT generate_series(1, 1000)",
        )
        .await
        .expect("the owner creates a table in its tablespace");
        let row = c
            .query_one(
                "SELECT pg_tablespace_location(oid), current_setting('temp_tablespaces') \
                 FROM pg_tablespace WHERE spcname = 'reports'",
                &[],
            )
            .await
            .unwrap();
        (row.get::<_, String>(0), row.get::<_, String>(1))
    });
    assert_eq!(location, "/var/lib/postgresql/tablespaces/reports/data");
    assert_eq!(temporary, "\"scratch\"");
    for instance in ["pg-1", "pg-2"] {
        for tablespace in ["reports", "scratch"] {
            assert!(sim
                .json(&["get", "pvc", &format!("{instance}-tbs-{tablespace}")])
                .is_some());
        }
    }
    let replica_rows = sim.eventually("the table in the tablespace on the replica", 60, || {
        let out = sim.in_postgres(
            "pg-2",
            &[
                "psql",
                "-U",
                "postgres",
                "-Atc",
                "SELECT count(*) FROM archive",
                "app",
            ],
        )?;
        (out.trim() == "1000").then_some(out)
    });
    assert_eq!(replica_rows.trim(), "1000");
    let on_volume = sim
        .in_postgres(
            "pg-2",
            &["ls", "/var/lib/postgresql/tablespaces/reports/data"],
        )
        .unwrap_or_default();
    assert!(on_volume.contains("PG_15_"), "{on_volume}");

    // The managed role, with the password from its Secret.
    sim.eventually("the role reconciled", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let reconciled = c.pointer("/status/managedRolesStatus/byStatus/reconciled")?;
        reconciled
            .as_array()?
            .iter()
            .any(|r| r == "reporting")
            .then_some(())
    });
    let answer = sim.runtime.block_on(async {
        let mut config = tokio_postgres::Config::new();
        config
            .host(&rw)
            .port(5432)
            .user("reporting")
            .password("it's-a-s3cret")
            .dbname("app")
            .connect_timeout(Duration::from_secs(5));
        let (client, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .expect("the managed role logs in with its Secret's password");
        tokio::spawn(connection);
        let row = client
            .query_one("SELECT pg_has_role('pg_read_all_data', 'MEMBER')", &[])
            .await
            .unwrap();
        row.get::<_, bool>(0)
    });
    assert!(answer, "inRoles applied");

    // A Database object: created by the primary, its status applied; deleted with
    // databaseReclaimPolicy delete, the database is dropped before the object goes.
    sim.apply(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Database\nmetadata:\n  name: inventory\nspec:\n  name: inventory\n  owner: app\n  databaseReclaimPolicy: delete\n  cluster:\n    name: pg\n",
    )
    .unwrap();
    let database = sim.eventually("the Database applied", 60, || {
        let d = sim.json(&["get", "database", "inventory"])?;
        (d.pointer("/status/applied")? == &serde_json::Value::Bool(true)).then_some(d)
    });
    assert_eq!(
        database
            .pointer("/metadata/finalizers/0")
            .and_then(|f| f.as_str()),
        Some("cnpg.io/deleteDatabase")
    );
    let exists = |sim: &Sim| -> bool {
        sim.runtime.block_on(async {
            let c = connect_soon(&rw, &password).await.expect("-rw answers");
            c.query_one(
                "SELECT count(*) FROM pg_database WHERE datname = 'inventory'",
                &[],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
                == 1
        })
    };
    assert!(
        exists(&sim),
        "the Database object's database was not created"
    );
    sim.kubectl(&["delete", "database", "inventory", "--wait=false"]);
    sim.eventually("the Database object gone", 60, || {
        sim.json(&["get", "database", "inventory"])
            .is_none()
            .then_some(())
    });
    assert!(
        !exists(&sim),
        "databaseReclaimPolicy delete left the database"
    );

    // WAL reaches the bucket.
    sim.kubectl(&["cnpg", "psql", "pg", "--", "-Atc", "SELECT pg_switch_wal()"]);
    sim.eventually("ContinuousArchiving True", 120, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        let conditions = c.pointer("/status/conditions")?.as_array()?;
        conditions
            .iter()
            .any(|c| {
                str_at(c, "/type") == Some("ContinuousArchiving")
                    && str_at(c, "/status") == Some("True")
            })
            .then_some(())
    });

    // `kubectl cnpg backup`: a Backup taken by an instance over the protocol.
    let before_backup = writer.count();
    let said = sim.kubectl(&["cnpg", "backup", "pg", "--backup-name", "first"]);
    assert!(said.contains("first"), "{said}");
    let backup = sim.eventually("the Backup completed", 300, || {
        let b = sim.json(&["get", "backup", "first"])?;
        match str_at(&b, "/status/phase") {
            Some("completed") => Some(b),
            Some("failed") => panic!("the backup failed: {b:#}"),
            _ => None,
        }
    });
    for field in [
        "backupId",
        "beginWal",
        "endWal",
        "startedAt",
        "stoppedAt",
        "destinationPath",
    ] {
        assert!(
            backup.pointer(&format!("/status/{field}")).is_some(),
            "no status.{field}: {backup:#}"
        );
    }
    assert_eq!(str_at(&backup, "/status/method"), Some("barmanObjectStore"));
    assert_eq!(str_at(&backup, "/status/serverName"), Some("pg"));
    // prefer-standby (the default): the replica took it.
    let primary = str_at(&status, "/status/currentPrimary")
        .unwrap()
        .to_string();
    let taken_by = str_at(&backup, "/status/instanceID/podName").unwrap();
    assert_ne!(taken_by, primary, "prefer-standby picks the standby");

    // In the object store's catalog, as barman-cloud lays it out.
    let id = str_at(&backup, "/status/backupId").unwrap().to_string();
    let target = pgherd_backup::store::StoreTarget {
        configuration: serde_json::from_value(serde_json::json!({
            "destinationPath": "s3://backups/",
            "endpointURL": moto.endpoint(),
            "s3Credentials": {
                "accessKeyId": {"name": "c", "key": "id"},
                "secretAccessKey": {"name": "c", "key": "secret"}
            }
        }))
        .unwrap(),
        server_name: "pg".into(),
        secrets: [("c/id", ACCESS_KEY), ("c/secret", SECRET_KEY)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let found = sim.runtime.block_on(async {
        let (store, server) = target.open(Default::default(), Default::default()).unwrap();
        let catalog = pgherd_backup::catalog::BackupCatalog::load(&store, &server)
            .await
            .unwrap();
        let found = catalog.done().any(|e| e.id.as_str() == id);
        found
    });
    assert!(found, "backup {id} is not in the bucket's catalog");

    let events = sim.kubectl(&["describe", "cluster", "pg"]);
    assert!(events.contains("BackupCompleted"), "{events}");

    // The Cluster's status records it.
    sim.eventually("lastSuccessfulBackup", 60, || {
        let c = sim.json(&["get", "cluster", "pg"])?;
        c.pointer("/status/lastSuccessfulBackup")?;
        c.pointer("/status/firstRecoverabilityPoint")?;
        let conditions = c.pointer("/status/conditions")?.as_array()?;
        conditions
            .iter()
            .any(|c| {
                str_at(c, "/type") == Some("LastBackupSucceeded")
                    && str_at(c, "/status") == Some("True")
            })
            .then_some(())
    });

    // A ScheduledBackup with `immediate`: a Backup at once, labelled and owned by it.
    sim.apply(
        "apiVersion: postgresql.cnpg.io/v1\nkind: ScheduledBackup\nmetadata:\n  name: daily\nspec:\n  schedule: \"0 0 0 * * *\"\n  immediate: true\n  backupOwnerReference: self\n  cluster:\n    name: pg\n",
    )
    .unwrap();
    let scheduled = sim.eventually("the scheduled Backup completed", 300, || {
        let list = sim.json(&["get", "backups", "-l", "cnpg.io/scheduled-backup=daily"])?;
        let b = list["items"].as_array()?.first()?.clone();
        match str_at(&b, "/status/phase") {
            Some("completed") => Some(b),
            Some("failed") => panic!("the scheduled backup failed: {b:#}"),
            _ => None,
        }
    });
    let schedule = sim.json(&["get", "scheduledbackup", "daily"]).unwrap();
    assert_eq!(
        str_at(&scheduled, "/metadata/ownerReferences/0/uid"),
        str_at(&schedule, "/metadata/uid"),
        "owned by its schedule"
    );
    assert!(str_at(&scheduled, "/metadata/name")
        .unwrap()
        .starts_with("daily-"));
    assert!(
        schedule.pointer("/status/lastScheduleTime").is_some(),
        "{schedule:#}"
    );
    assert!(
        schedule.pointer("/status/nextScheduleTime").is_some(),
        "{schedule:#}"
    );

    let acked = writer.stop();
    let lost = sim
        .runtime
        .block_on(k8s::load::lost(&rw, &password, &acked));
    assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());

    // Recovery, as the seeds' runbooks do it: from the Backup object, and from the object store
    // through spec.externalClusters; each comes up with the rows committed before the backup.
    let store = format!(
        "destinationPath: s3://backups/\n      endpointURL: {}\n      s3Credentials:\n        accessKeyId:\n          name: store-creds\n          key: ACCESS_KEY_ID\n        secretAccessKey:\n          name: store-creds\n          key: ACCESS_SECRET_KEY\n",
        moto.endpoint()
    );
    sim.apply(&format!(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: from-backup\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  walStorage:\n    size: 1Gi\n  tablespaces:\n    - name: reports\n      owner:\n        name: app\n      storage:\n        size: 1Gi\n    - name: scratch\n      temporary: true\n      storage:\n        size: 1Gi\n  bootstrap:\n    recovery:\n      backup:\n        name: first\n---\napiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: from-store\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  tablespaces:\n    - name: reports\n      owner:\n        name: app\n      storage:\n        size: 1Gi\n    - name: scratch\n      temporary: true\n      storage:\n        size: 1Gi\n  bootstrap:\n    recovery:\n      source: origin\n  externalClusters:\n    - name: origin\n      barmanObjectStore:\n        serverName: pg\n        {}",
        store.replace("\n      ", "\n        ")
    ))
    .unwrap();
    // bootstrap.pg_basebackup, as CloudNativePG's documentation clones a cluster in the same
    // namespace: streaming_replica with the source's replication certificate, its CA verifying
    // the -rw Service's name; the tablespaces land on the copy's own volumes.
    sim.apply(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: cloned\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  tablespaces:\n    - name: reports\n      owner:\n        name: app\n      storage:\n        size: 1Gi\n    - name: scratch\n      temporary: true\n      storage:\n        size: 1Gi\n  bootstrap:\n    pg_basebackup:\n      source: pg\n  externalClusters:\n    - name: pg\n      connectionParameters:\n        host: pg-rw\n        user: streaming_replica\n        dbname: postgres\n        sslmode: verify-full\n      sslKey:\n        name: pg-replication\n        key: tls.key\n      sslCert:\n        name: pg-replication\n        key: tls.crt\n      sslRootCert:\n        name: pg-ca\n        key: ca.crt\n",
    )
    .unwrap();
    // A replica cluster following the source through its object store alone (CloudNativePG's
    // usual disaster-recovery standby): restored from the latest backup, then replaying the
    // archive as a standby that never accepts writes.
    sim.apply(&format!(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: standby\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  tablespaces:\n    - name: reports\n      owner:\n        name: app\n      storage:\n        size: 1Gi\n    - name: scratch\n      temporary: true\n      storage:\n        size: 1Gi\n  replica:\n    enabled: true\n    source: origin\n  bootstrap:\n    recovery:\n      source: origin\n  externalClusters:\n    - name: origin\n      barmanObjectStore:\n        serverName: pg\n        {}  backup:\n    barmanObjectStore:\n      {}",
        store.replace("\n      ", "\n        "),
        store
    ))
    .unwrap();
    for restored in ["from-backup", "from-store", "cloned"] {
        sim.eventually(&format!("{restored} healthy"), 300, || {
            let c = sim.json(&["get", "cluster", restored])?;
            (str_at(&c, "/status/phase") == Some("Cluster in healthy state")).then_some(())
        });
        let ip = sim
            .json(&["get", "service", &format!("{restored}-rw")])
            .unwrap();
        let ip = str_at(&ip, "/spec/clusterIP").unwrap().to_string();
        // The application owner gets the new cluster's password, as CloudNativePG does.
        let own = sim.secret_value(&format!("{restored}-app"), "password");
        let rows: i64 = sim.runtime.block_on(async {
            let c = connect_soon(&ip, &own)
                .await
                .expect("the restored -rw answers");
            c.query_one("SELECT count(*) FROM ledger", &[])
                .await
                .unwrap()
                .get(0)
        });
        assert!(
            rows >= i64::try_from(before_backup).unwrap(),
            "{restored}: {rows} rows, {before_backup} were committed before the backup"
        );
        // The table in the tablespace, restored onto the new cluster's tablespace volume.
        let (archived, location): (i64, String) = sim.runtime.block_on(async {
            let c = connect_soon(&ip, &own).await.unwrap();
            let row = c
                .query_one(
                    "SELECT (SELECT count(*) FROM archive), \
                     (SELECT pg_tablespace_location(oid) FROM pg_tablespace WHERE spcname = 'reports')",
                    &[],
                )
                .await
                .unwrap();
            (row.get(0), row.get(1))
        });
        assert_eq!(archived, 1000, "{restored}");
        assert_eq!(location, "/var/lib/postgresql/tablespaces/reports/data");
        let restored_files = sim
            .in_postgres(
                &format!("{restored}-1"),
                &["ls", "/var/lib/postgresql/tablespaces/reports/data"],
            )
            .unwrap_or_default();
        assert!(
            restored_files.contains("PG_15_"),
            "{restored}: {restored_files}"
        );
    }
    sim.eventually("the replica cluster healthy", 300, || {
        let c = sim.json(&["get", "cluster", "standby"])?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")).then_some(())
    });
    let standby = sim.json(&["get", "service", "standby-rw"]).unwrap();
    let standby = str_at(&standby, "/spec/clusterIP").unwrap().to_string();
    // Its roles are the source's until it is promoted: the source's application password.
    let (recovering, rows, refused): (bool, i64, String) = sim.runtime.block_on(async {
        let c = connect_soon(&standby, &password)
            .await
            .expect("the replica cluster's -rw answers");
        let row = c
            .query_one(
                "SELECT pg_is_in_recovery(), (SELECT count(*) FROM ledger)",
                &[],
            )
            .await
            .unwrap();
        let refused = c
            .batch_execute("INSERT INTO ledger VALUES (-1)")
            .await
            .unwrap_err();
        (
            row.get(0),
            row.get(1),
            refused
                .as_db_error()
                .map(|d| d.message().to_string())
                .unwrap_or_default(),
        )
    });
    assert!(
        recovering,
        "the replica cluster's designated primary accepts writes"
    );
    assert!(refused.contains("read-only"), "{refused}");
    assert!(
        rows >= i64::try_from(before_backup).unwrap(),
        "standby: {rows} rows, {before_backup} were committed before the backup"
    );
    // A replica cluster archives to its own object store (`archive_mode = always` on its
    // designated primary) and takes backups there while it follows its source: its Backup
    // completes (the segment it ends in archived) and is restored into a cluster of its own.
    sim.eventually("the replica cluster archiving", 120, || {
        let c = sim.json(&["get", "cluster", "standby"])?;
        c.pointer("/status/conditions")?
            .as_array()?
            .iter()
            .any(|c| {
                str_at(c, "/type") == Some("ContinuousArchiving")
                    && str_at(c, "/status") == Some("True")
            })
            .then_some(())
    });
    sim.kubectl(&[
        "cnpg",
        "backup",
        "standby",
        "--backup-name",
        "standby-first",
    ]);
    let replica_backup = sim.eventually("the replica cluster's Backup completed", 300, || {
        let b = sim.json(&["get", "backup", "standby-first"])?;
        match str_at(&b, "/status/phase") {
            Some("completed") => Some(b),
            Some("failed") => panic!("the replica cluster's backup failed: {b:#}"),
            _ => None,
        }
    });
    assert_eq!(
        str_at(&replica_backup, "/status/serverName"),
        Some("standby")
    );
    sim.apply(
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata:\n  name: from-replica\nspec:\n  instances: 1\n  imageName: ghcr.io/cloudnative-pg/postgresql:15\n  storage:\n    size: 1Gi\n  tablespaces:\n    - name: reports\n      owner:\n        name: app\n      storage:\n        size: 1Gi\n    - name: scratch\n      temporary: true\n      storage:\n        size: 1Gi\n  bootstrap:\n    recovery:\n      backup:\n        name: standby-first\n",
    )
    .unwrap();
    // Promoted (`replica.enabled: false`): writable, with its own application password.
    sim.kubectl(&[
        "patch",
        "cluster",
        "standby",
        "--type=merge",
        "-p",
        r#"{"spec":{"replica":{"enabled":false}}}"#,
    ]);
    let standby_password = sim.secret_value("standby-app", "password");
    sim.eventually("the promoted replica cluster writable", 120, || {
        sim.runtime.block_on(async {
            let c = k8s::connect(&standby, &standby_password).await?;
            c.batch_execute("INSERT INTO ledger VALUES (-1)").await.ok()
        })
    });
    // The replica cluster's backup restores: the source's rows as of that backup.
    sim.eventually("from-replica healthy", 300, || {
        let c = sim.json(&["get", "cluster", "from-replica"])?;
        (str_at(&c, "/status/phase") == Some("Cluster in healthy state")).then_some(())
    });
    let from_replica = sim.json(&["get", "service", "from-replica-rw"]).unwrap();
    let from_replica = str_at(&from_replica, "/spec/clusterIP")
        .unwrap()
        .to_string();
    let from_replica_password = sim.secret_value("from-replica-app", "password");
    let restored_rows: i64 = sim.runtime.block_on(async {
        let c = connect_soon(&from_replica, &from_replica_password)
            .await
            .expect("from-replica's -rw answers");
        c.query_one("SELECT count(*) FROM ledger", &[])
            .await
            .unwrap()
            .get(0)
    });
    assert!(
        restored_rows >= rows,
        "from-replica: {restored_rows} rows, the replica cluster had {rows} before its backup"
    );
    // The clone is a physical copy (the source's system identifier) that writes on its own.
    let cloned = sim.json(&["get", "service", "cloned-rw"]).unwrap();
    let cloned = str_at(&cloned, "/spec/clusterIP").unwrap().to_string();
    let system = |ip: &str, password: &str| -> i64 {
        sim.runtime.block_on(async {
            let c = connect_soon(ip, password).await.unwrap();
            c.query_one(
                "SELECT system_identifier FROM pg_catalog.pg_control_system()",
                &[],
            )
            .await
            .unwrap()
            .get(0)
        })
    };
    let cloned_password = sim.secret_value("cloned-app", "password");
    assert_eq!(system(&cloned, &cloned_password), system(&rw, &password));
    let lost = sim
        .runtime
        .block_on(k8s::load::lost(&rw, &password, &acked));
    assert!(lost.is_empty(), "{} acknowledged commits lost", lost.len());
    let logged = operator.logged();
    for secret in ["it's-a-s3cret", SECRET_KEY] {
        assert!(
            !logged.contains(secret),
            "a credential reached the operator's log"
        );
    }
}
