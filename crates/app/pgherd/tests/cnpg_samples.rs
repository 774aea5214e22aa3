//! CloudNativePG's own samples (`docs/src/samples/`, copied verbatim into
//! `tests/fixtures/cnpg-samples/`, see its README) run with `pgherd local up -f` as written, as
//! root with the default state directory (bind mounts of temporary directories over
//! /var/lib/pgherd and /run/pgherd in a private mount namespace, as `readme_command.rs` does),
//! and become healthy with what they declare: the managed roles log in with their Secrets'
//! passwords, the superuser and application Secrets are the ones given, the managed
//! extensions' libraries are loaded, and the object store takes a backup.
//!
//! The one change: `cluster-example-full.yaml` names an object store at
//! `http://custom-endpoint:1234`, which cannot exist here; the test points `endpointURL` at a
//! local S3 server (moto) with the sample's bucket, and changes nothing else.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

mod common;
use common::{repo_root, DefaultStateDir};

const SAMPLES: &str = "tests/fixtures/cnpg-samples";

#[test]
fn cloudnativepg_samples_run_as_written() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipped: the samples run as root with the default state directory (CI runs as root)"
        );
        return;
    }
    let samples = repo_root().join(SAMPLES);
    let prepared = DefaultStateDir::prepare();
    let out = prepared.1.clone();
    let moto = pgherd_testkit::moto::Moto::start();
    moto.create_bucket("cluster-example-full-backup");
    let full = std::fs::read_to_string(samples.join("cluster-example-full.yaml")).unwrap();
    let unreachable = "endpointURL: http://custom-endpoint:1234";
    assert!(
        full.contains(unreachable),
        "the sample changed: {unreachable:?} is gone"
    );
    std::fs::write(
        out.join("cluster-example-full.yaml"),
        full.replace(unreachable, &format!("endpointURL: {}", moto.endpoint())),
    )
    .unwrap();
    let script = format!(
        r#"port() {{ python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoints"]["rw"].split(":")[1])' "$1"; }}

pgherd local up -f {samples}/cluster-example.yaml > "$OUT/example.txt" 2>&1
pgherd local status cluster-example -o json > "$OUT/example.json"
pgherd local delete cluster cluster-example >> "$OUT/example.txt" 2>&1

pgherd local up -f {samples}/cluster-example-with-roles.yaml > "$OUT/roles.txt" 2>&1
pgherd local status cluster-example-with-roles -o json > "$OUT/roles.json"
PGPASSWORD=dante psql "host=127.0.0.1 port=$(port "$OUT/roles.json") user=dante dbname=app" -Atc \
  "select current_user, rolconnlimit, rolcreatedb, rolinherit, pg_has_role('dante', 'pg_monitor', 'member') from pg_roles where rolname = current_user" > "$OUT/dante.txt"
pgherd local delete cluster cluster-example-with-roles >> "$OUT/roles.txt" 2>&1

pgherd local up -f "$OUT/cluster-example-full.yaml" > "$OUT/full.txt" 2>&1
pgherd local status cluster-example-full -o json > "$OUT/full.json"
PGPASSWORD=TxVeQ4nN82SSiYHoswqOURZvQDaL4KpNElsCEEe9bwDxMd73KckIeXzS5cU6LiC2 psql "host=127.0.0.1 port=$(port "$OUT/full.json") user=app dbname=app" -Atc \
  "select current_user, (select count(*) from pg_extension where extname = 'pg_stat_statements')" > "$OUT/full-app.txt"
PGPASSWORD=uN3i1Hh0bYbCc4TyVAacBhmSzgqtzqxmOVjAn0QIChsJrSmu9PY2fw2q8EKKLpZ9 psql "host=127.0.0.1 port=$(port "$OUT/full.json") user=postgres dbname=postgres" -Atc \
  "select current_user, current_setting('shared_preload_libraries'), current_setting('pg_stat_statements.track'), current_setting('auto_explain.log_min_duration')" > "$OUT/full-superuser.txt"
pgherd local backup cluster-example-full > "$OUT/full-backup.txt" 2>&1
"#,
        samples = samples.display()
    );
    let ran = DefaultStateDir::run(prepared, &script);
    let (output, log) = (&ran.output, ran.log());
    let outputs: String = ["example.txt", "roles.txt", "full.txt", "full-backup.txt"]
        .iter()
        .map(|f| format!("--- {f}\n{}", ran.read(f)))
        .collect();
    assert!(
        output.status.success(),
        "the samples failed:\n{}\n{}\n{outputs}\ncontrol plane:\n{log}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    for (name, file, text) in [
        ("cluster-example", "example.json", "example.txt"),
        ("cluster-example-with-roles", "roles.json", "roles.txt"),
        ("cluster-example-full", "full.json", "full.txt"),
    ] {
        let up = ran.read(text);
        assert!(up.contains(&format!("{name} is healthy")), "{up}");
        // Nothing in CloudNativePG's own samples is refused or silently ignored: the warnings
        // are pgherd's advice about asynchronous replication, and (for -full, which sets
        // startDelay and stopDelay) that the local platform keeps its own timings.
        let advice = "spec.postgresql.synchronous: warning: no synchronous replication";
        let timings = "spec.startDelay/stopDelay/smartShutdownTimeout/switchoverDelay";
        let other: Vec<&str> = up
            .lines()
            .filter(|l| {
                l.contains("warning")
                    && !l.contains(advice)
                    && !(name == "cluster-example-full" && l.contains(timings))
            })
            .collect();
        assert!(other.is_empty(), "{name}: {other:?}");
        let status: serde_json::Value = serde_json::from_str(&ran.read(file)).unwrap();
        assert_eq!(status["readyInstances"], 3, "{name}: {status:#}");
    }
    assert_eq!(ran.read("dante.txt").trim(), "dante|4|t|f|t");
    assert_eq!(ran.read("full-app.txt").trim(), "app|1");
    let superuser = ran.read("full-superuser.txt");
    let fields: Vec<&str> = superuser.trim().split('|').collect();
    assert_eq!(fields[0], "postgres", "{superuser}");
    assert!(fields[1].contains("pg_stat_statements"), "{superuser}");
    assert!(fields[1].contains("auto_explain"), "{superuser}");
    assert_eq!(fields[2], "all", "{superuser}");
    assert_eq!(fields[3], "10s", "{superuser}");
    let backup = ran.read("full-backup.txt");
    assert!(backup.contains("completed"), "{backup}");
}
