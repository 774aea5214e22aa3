//! The distributed topology's controlled switchover between clusters. Demotion: a primary
//! cluster's primary, told to follow another cluster (`Upstream::demote`), stops cleanly (a
//! shutdown checkpoint its standbys and the new source's designated primary receive), archives
//! the segment holding that checkpoint, issues a token of it (`status.demotionToken`) and
//! follows as a standby. Promotion: the other cluster's designated primary, given that token,
//! follows on until it has replayed past the checkpoint on the token's timeline of the token's
//! system, then promotes: nothing the demoted primary acknowledged is lost, and a stale token
//! is refused with why.

use crate::postgres::Postgres;
use crate::InstanceError;
use pgherd_api::replica_token::ReplicaToken;
use pgherd_backup::{WalFileKind, WalFileName};
use pgherd_postgres::control_file::DbState;
use pgherd_postgres::wal::{segment_name, Timeline, DEFAULT_SEGMENT_SIZE};
use tokio_postgres::Client;

/// In PGDATA: the token this data directory issued when its cluster was demoted.
const DEMOTION_TOKEN_FILE: &str = "pgherd-demotion-token";
/// In PGDATA: the promotion token this data directory was promoted with.
const PROMOTED_WITH_FILE: &str = "pgherd-promoted-with";

fn read(pg: &Postgres, name: &str) -> Option<String> {
    std::fs::read_to_string(pg.pgdata.join(name))
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// The WAL files in `pg_wal`, by their parsed names.
fn wal_files(pg: &Postgres) -> impl Iterator<Item = (WalFileName, std::fs::DirEntry)> {
    std::fs::read_dir(pg.pgdata.join("pg_wal"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<WalFileName>().ok()?, e)))
}

/// The token this data directory issued when demoted.
pub fn issued(pg: &Postgres) -> Option<String> {
    read(pg, DEMOTION_TOKEN_FILE)
}

/// The promotion token this data directory was promoted with.
pub fn promoted_with(pg: &Postgres) -> Option<String> {
    read(pg, PROMOTED_WITH_FILE)
}

/// The size of the WAL segments in `pg_wal` (all the same); the default when none is there.
fn segment_size(pg: &Postgres) -> u64 {
    wal_files(pg)
        .find(|(name, _)| name.kind() == WalFileKind::Segment)
        .and_then(|(_, e)| e.metadata().ok())
        .map(|m| m.len())
        .filter(|size| size.is_power_of_two())
        .unwrap_or(DEFAULT_SEGMENT_SIZE)
}

/// Demote the stopped former primary in `pg`: check it stopped cleanly, archive the segment of
/// its shutdown checkpoint (when the cluster archives), write the token, then `standby.signal`.
/// Safe to repeat after a failure at any step (nothing is marked done before the last).
pub async fn demote(
    pg: &Postgres,
    wal_store: Option<&pgherd_instance_protocol::WalStore>,
) -> Result<String, InstanceError> {
    let unreadable = || {
        InstanceError::InvalidSetting(
            "spec.replica.primary: cannot read global/pg_control to demote this primary".into(),
        )
    };
    let mut control = pg.control_file().ok_or_else(unreadable)?;
    if control.state != DbState::ShutDown {
        // It crashed (or was killed while stopping): finish its crash recovery where no client
        // can reach it, then stop it cleanly, so its WAL ends with a shutdown checkpoint.
        tracing::info!("demoting: recovering the stopped primary privately first");
        pg.start_private(
            "",
            "pg_ctl start (privately, to end a crashed primary cleanly before demoting it)",
        )?;
        pg.stop(
            crate::ShutdownMode::Fast,
            std::time::Duration::from_secs(120),
        )?;
        control = pg.control_file().ok_or_else(unreadable)?;
    }
    if control.state != DbState::ShutDown {
        return Err(InstanceError::InvalidSetting(format!(
            "spec.replica.primary: this primary did not stop cleanly ({:?} in pg_control), so the point where its cluster hands over is not known: it is not demoted (hint: start it as a primary again by naming its own cluster in replica.primary, let it stop cleanly, then demote it)",
            control.state
        )));
    }
    let redo_wal_file = segment_name(Timeline(control.timeline), control.redo, segment_size(pg));
    if let Some(store) = wal_store {
        // The source's new primary may follow through the object store alone: it needs the
        // segment the shutdown checkpoint is in, which PostgreSQL archives only when full.
        crate::wal::archive_segment(store, &pg.pgdata.join("pg_wal").join(&redo_wal_file))
            .await
            .map_err(|e| {
                InstanceError::Backup(format!(
                    "demoting: cannot archive {redo_wal_file}, the segment of the shutdown checkpoint: {e}"
                ))
            })?;
    }
    let token = ReplicaToken {
        system_identifier: control.system_identifier,
        timeline: control.timeline,
        redo: control.redo,
        redo_wal_file,
        time: pgherd_api::common::rfc3339(control.time),
        operator_version: format!("pgherd {}", env!("CARGO_PKG_VERSION")),
    }
    .encode();
    pg.write_file(DEMOTION_TOKEN_FILE, &token)?;
    let _ = std::fs::remove_file(pg.pgdata.join(PROMOTED_WITH_FILE));
    pg.write_file("standby.signal", "")?;
    tracing::info!("demoted: token issued, following the new source");
    Ok(token)
}

/// Whether the designated primary may be promoted with `token` now. `Ok(None)`: yes.
/// `Ok(Some(why))`: not yet (it follows on). `Err`: never with this token.
pub async fn promotion_blocked(
    pg: &Postgres,
    client: &Client,
    token: &str,
) -> Result<Option<String>, InstanceError> {
    let refused =
        |why: String| InstanceError::InvalidSetting(format!("spec.replica.promotionToken: {why}"));
    let wanted = ReplicaToken::decode(token).map_err(refused)?;
    let sql = |e: tokio_postgres::Error| InstanceError::Sql {
        context: "checking the promotion token",
        message: e.to_string(),
    };
    let row = client
        .query_one(
            "SELECT pg_catalog.pg_last_wal_replay_lsn()::text, \
             (SELECT system_identifier::text FROM pg_catalog.pg_control_system())",
            &[],
        )
        .await
        .map_err(sql)?;
    let replayed: Option<String> = row.get(0);
    let system: String = row.get(1);
    if system != wanted.system_identifier.to_string() {
        return Err(refused(format!(
            "the token is of database system {}, this cluster is {system}: it was issued by another cluster",
            wanted.system_identifier
        )));
    }
    // The newest timeline this standby knows of: it has the history file of every timeline
    // it switched to (and a base backup brings its timeline's).
    let timeline = newest_timeline(pg);
    if timeline > wanted.timeline {
        return Err(refused(format!(
            "the token is of timeline {}, this cluster follows timeline {timeline}: it is not the latest demotion of the source (a primary was promoted since)",
            wanted.timeline
        )));
    }
    let replayed = replayed.and_then(|l| l.parse::<pgherd_postgres::Lsn>().ok());
    if timeline < wanted.timeline || replayed.is_none_or(|l| l <= wanted.redo) {
        return Ok(Some(format!(
            "waiting to replay past the promotion token's checkpoint {} on timeline {} (replayed {} on timeline {timeline}) before promoting",
            wanted.redo,
            wanted.timeline,
            replayed.map_or_else(|| "nothing".to_string(), |l| l.to_string())
        )));
    }
    Ok(None)
}

/// The highest timeline with a history file in `pg_wal` (1 when there is none).
fn newest_timeline(pg: &Postgres) -> u32 {
    wal_files(pg)
        .filter(|(name, _)| name.kind() == WalFileKind::History)
        .map(|(name, _)| name.timeline())
        .max()
        .unwrap_or(1)
}

/// Record that `pg` was promoted with `token` (its demotion token, if any, is spent).
pub fn promoted(pg: &Postgres, token: Option<&str>) -> Result<(), InstanceError> {
    let _ = std::fs::remove_file(pg.pgdata.join(DEMOTION_TOKEN_FILE));
    if let Some(token) = token {
        pg.write_file(PROMOTED_WITH_FILE, token)?;
    }
    Ok(())
}
