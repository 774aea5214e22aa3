//! The instance manager's loop: read the desired [`InstanceSpec`], converge PostgreSQL to it
//! (bootstrap, configuration, start after a crash, promotion, slots), and publish the observed
//! [`InstanceStatus`]. One iteration per second, or sooner when asked to stop.

use crate::bootstrap::{create_data, initialize_application, primary_source, STARTUP_TIMEOUT};
use crate::duties::{archiver_stat, primary_duties, sync_slots};
use crate::observe::{connect, observe};
use crate::{InstanceError, OsUser, PgBinaries, Postgres};
use pgherd_instance_protocol::{DesiredRole, InstanceSpec, InstanceStatus, Role};
use pgherd_postgres::conf::{render_hba, render_ident};
use pgherd_postgres::MajorVersion;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

/// Marker written once the application database of a new cluster exists.
pub(crate) const INITIALIZED_MARKER: &str = "pgherd.initialized";

pub use crate::liveness::{watch_liveness, Published, Shared};

/// Read the spec file.
pub fn load_spec(path: &Path) -> Result<InstanceSpec, InstanceError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| InstanceError::io("cannot read", path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| InstanceError::InvalidSetting(format!("{}: {e}", path.display())))
}

pub fn postgres_for(spec: &InstanceSpec) -> Result<Postgres, InstanceError> {
    Ok(Postgres {
        binaries: PgBinaries {
            dir: spec.bin_dir.clone(),
            major: spec.major,
        },
        pgdata: spec.pgdata.clone(),
        socket_dir: spec.socket_dir.clone(),
        port: spec.port,
        user: OsUser::for_postgres(&spec.os_user)?,
        log_file: spec.log_dir.join("postgres.log"),
    })
}

/// The loop's memory between iterations.
#[derive(Debug, Default)]
struct State {
    child: Option<Child>,
    /// A postmaster this manager did not start (it was restarted while PostgreSQL kept
    /// running): adopted by PID.
    adopted: Option<u32>,
    /// The restart token PostgreSQL was last started under.
    restart_token: Option<String>,
    /// Configuration text last written, to know when a reload is due.
    written_config: Option<String>,
    /// Why PostgreSQL last stopped on its own (its last FATAL message), until it runs again
    /// as it should: a recovery that keeps failing says why, not just "recovering".
    last_failure: Option<String>,
    /// A recovery's PostgreSQL was seen promoted (out of recovery): its recovery settings may
    /// go. Until then they stay, whatever the signal files say: PostgreSQL removes
    /// `recovery.signal` before its promotion is complete, and a restart in that window would
    /// run crash recovery through every restored WAL file, past the recovery target.
    recovery_done: bool,
    /// Since when this replica has run without streaming from its primary.
    not_streaming_since: Option<Instant>,
    /// What the cluster-wide in-database duties last applied (superuser password, managed
    /// extensions), so they run only on a change.
    applied: crate::declarative::Applied,
    /// What the publications and subscriptions last applied, so they run only on a change.
    logical: crate::logical::BackgroundLogical,
    /// PostgreSQL's exits on its own in a row, when the last start was, and the earliest next
    /// start: a PostgreSQL that keeps stopping (a recovery target not reachable yet, a bad
    /// setting) is restarted with growing pauses, not four times a second.
    crash_loop: crate::crash_loop::CrashLoop,
    /// The last pass error written to the log (each distinct one is logged once).
    logged_error: Option<String>,
    /// A major upgrade's old data was looked for (and removed) once the spec allowed it: data
    /// is only set aside before this process's PostgreSQL first starts (an upgrade stops every
    /// manager), so once per process is enough — not a directory scan every second.
    older_majors_discarded: bool,
}

fn publish(shared: &Shared, status: InstanceStatus) {
    if let Ok(mut guard) = shared.write() {
        guard.status = Some(status);
        guard.observed_at = Some(Instant::now());
    }
}

fn down_status(spec: &InstanceSpec, error: Option<String>) -> InstanceStatus {
    InstanceStatus {
        error,
        ..crate::observe::blank_status(&spec.name, Role::Down)
    }
}

/// How long a replica may run without streaming before its status says so.
const NOT_STREAMING_GRACE: Duration = Duration::from_secs(10);

/// How long a fast shutdown may take before the postmaster's process group is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl State {
    fn running(&mut self, pg: &Postgres) -> bool {
        if let Some(child) = &mut self.child {
            match child.try_wait() {
                Ok(None) => return true,
                Ok(Some(_)) | Err(_) => {
                    // The postmaster is gone; its backends notice and exit on their own.
                    self.child = None;
                    self.last_failure = pg.last_fatal();
                    self.crash_loop.exited(Instant::now());
                    return false;
                }
            }
        }
        if self.adopted.is_none() {
            self.adopted = pg.running_postmaster();
        }
        match self.adopted {
            Some(pid) if crate::process::is_alive(pid) => true,
            _ => {
                self.adopted = None;
                false
            }
        }
    }

    fn stop(&mut self, pg: &Postgres) {
        if self.running(pg) {
            pg.stop_or_kill(STOP_TIMEOUT);
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.adopted = None;
    }
}

/// The status of an instance whose PostgreSQL is stopped on purpose (fenced, demoted, waiting
/// for its new primary), with the shutdown checkpoint when it stopped cleanly.
fn stopped_status(spec: &InstanceSpec, pg: &Postgres) -> InstanceStatus {
    let mut status = down_status(spec, None);
    if let Some(control) = pg.control_file() {
        status.timeline_id = Some(control.timeline);
        if control.state.is_clean_shutdown() {
            status.shutdown_checkpoint = Some(control.checkpoint);
        }
    }
    status.applied_generation = spec.generation;
    status.restart_token = spec.restart_token.clone();
    status
}

async fn converge(
    spec: &InstanceSpec,
    state: &mut State,
    shared: &Shared,
) -> Result<InstanceStatus, InstanceError> {
    let pg = postgres_for(spec)?;
    if spec.fenced {
        state.stop(&pg);
        return Ok(stopped_status(spec, &pg));
    }
    let self_fenced = shared.read().map(|g| g.self_fenced).unwrap_or(false);
    if self_fenced && spec.role == DesiredRole::Primary {
        // Isolated: stay stopped until the controller or a majority of peers is heard again.
        state.stop(&pg);
        let mut status = stopped_status(spec, &pg);
        status.self_fenced = true;
        status.error = Some(
            "stopped by itself: no word from the controller nor a majority of its peers within its lease"
                .into(),
        );
        return Ok(status);
    }
    if !state.running(&pg) {
        crate::major_upgrade::check_data_major(&pg, spec.role, spec.major)?;
    }
    if spec.role == DesiredRole::Replica {
        if state.running(&pg) && !pg.has_standby_signal() {
            // Demotion (switchover, or a failover decided while this primary was away): stop
            // with a shutdown checkpoint the standbys receive before the postmaster exits.
            tracing::info!("demoting: fast shutdown");
            state.stop(&pg);
            tracing::info!("demoted: stopped");
            state.written_config = None;
        }
        if spec.primary.is_none() {
            // No primary to follow yet (one is being promoted): stay stopped.
            state.stop(&pg);
            return Ok(stopped_status(spec, &pg));
        }
        if pg.is_initialized() && !state.running(&pg) && !pg.has_standby_signal() {
            pg.clear_stale_pid_file();
            crate::rejoin::rejoin(&pg, spec).await?;
            state.written_config = None;
        }
    }
    // A replica cluster's designated primary: what it follows.
    let mut following = spec
        .upstream
        .as_ref()
        .filter(|_| spec.role == DesiredRole::Primary);
    if let Some(token) = following.and_then(|u| u.promotion_token.as_deref()) {
        // Promoted with this token already (the controller has not recorded it yet), or a
        // primary that never followed: it leads as a primary.
        if crate::demotion::promoted_with(&pg).as_deref() == Some(token)
            || (pg.is_initialized() && !pg.has_standby_signal())
        {
            following = None;
        }
    }
    let designated = following.is_some();
    if designated && pg.is_initialized() && !pg.has_standby_signal() {
        if !following.is_some_and(|u| u.demote) {
            // A primary that accepted writes is never turned into a standby of another
            // cluster without a demotion (its WAL could diverge from the source's): refused
            // at admission; said here too.
            return Err(InstanceError::InvalidSetting(
                "spec.replica: this instance has run as a writable primary; it cannot follow another cluster (hint: create a new Cluster with replica.enabled and bootstrap from the source, or use the distributed topology: replica.primary naming the other cluster demotes this one)".into(),
            ));
        }
        // The distributed topology's demotion: a clean stop (the new source's designated
        // primary receives the shutdown checkpoint), the token, then it follows.
        if state.running(&pg) {
            tracing::info!("demoting the primary cluster: fast shutdown");
            state.stop(&pg);
            state.written_config = None;
        }
        pg.clear_stale_pid_file();
        crate::demotion::demote(&pg, spec.wal_store.as_ref()).await?;
    }
    if let Some(wal_dir) = &spec.wal_dir {
        // WAL not on its volume yet, before PostgreSQL starts: a crash between the old
        // `pg_wal` going and its link being made, or data made elsewhere with its WAL inside
        // (a major upgrade's): move it.
        let linked = std::fs::symlink_metadata(pg.pgdata.join("pg_wal"))
            .is_ok_and(|m| m.file_type().is_symlink());
        if pg.is_initialized() && !linked && !state.running(&pg) {
            crate::wal_dir::relocate(&pg.pgdata, wal_dir)?;
        }
    }
    let previous = if pg.is_initialized() {
        crate::declarative::Previous::Keep
    } else {
        crate::declarative::Previous::Discard
    };
    crate::declarative::prepare_locations(&pg, &spec.tablespaces, previous);
    if !pg.is_initialized() {
        create_data(&pg, spec).await?;
        if designated {
            // Follows its source from the copy on: a standby, never a recovery that promotes.
            let _ = std::fs::remove_file(pg.pgdata.join("recovery.signal"));
            pg.write_file("standby.signal", "")?;
        }
        if let Some(wal_dir) = &spec.wal_dir {
            crate::wal_dir::relocate(&pg.pgdata, wal_dir)?;
        }
        // A new cluster checks its archive is empty before it first archives; a copy of
        // another instance is not a new cluster.
        let flag = crate::wal::CHECK_EMPTY_WAL_ARCHIVE;
        if matches!(
            spec.bootstrap,
            pgherd_instance_protocol::Bootstrap::Clone
                | pgherd_instance_protocol::Bootstrap::FromObjectStore { .. }
        ) {
            let _ = std::fs::remove_file(pg.pgdata.join(flag));
        } else {
            pg.write_file(flag, "")?;
        }
    }
    let major = MajorVersion(spec.major);
    let recovery_bootstrap = matches!(
        spec.bootstrap,
        pgherd_instance_protocol::Bootstrap::Recovery { .. }
    ) && !designated
        // A replica cluster's former designated primary is a standby to promote, not a
        // recovery to its target.
        && !pg.has_standby_signal()
        && !pg.pgdata.join(INITIALIZED_MARKER).exists();
    let settings =
        crate::settings::effective_settings(spec, &pg, recovery_bootstrap && !state.recovery_done)?;
    let mut config = pgherd_postgres::conf::render_settings(&settings);
    let hba = render_hba(&spec.pg_hba, major);
    let ident = render_ident(&pg.user.name, &spec.pg_ident);
    config.push_str(&hba);
    config.push_str(&ident);
    if spec.role == DesiredRole::Replica {
        config.push_str(&primary_source(spec)?.conninfo());
    }
    if let Some(upstream) = following {
        config.push_str(upstream.conninfo.as_deref().unwrap_or_default());
    }
    if state.written_config.as_deref() != Some(config.as_str()) {
        pg.write_config(&settings, &hba, &ident)?;
        if spec.role == DesiredRole::Replica {
            pg.write_standby_config(&primary_source(spec)?)?;
        }
        if let Some(upstream) = following {
            pg.write_upstream_config(&spec.name, upstream)?;
        }
        let recovery_just_ended = recovery_bootstrap && state.recovery_done;
        if state.running(&pg) && recovery_just_ended {
            // The recovery target settings are gone; they only change at a restart. Done now,
            // before anything else connects, rather than as a rolling restart later.
            tracing::info!("recovery ended: restarting without the recovery settings");
            state.stop(&pg);
        } else if state.running(&pg) {
            pg.reload()?;
        }
        state.written_config = Some(config);
    }
    let restart_due = state
        .restart_token
        .as_ref()
        .is_some_and(|t| t != &spec.restart_token);
    if restart_due && state.running(&pg) {
        // A rolling restart, or settings that need one: fast stop, then start below.
        state.stop(&pg);
    }
    if !state.running(&pg) {
        // First start, restart, or PostgreSQL exited (a crash): start it; crash recovery
        // runs first when needed.
        if let Some(wait) = state.crash_loop.wait(Instant::now()) {
            return Err(InstanceError::CrashLoop {
                exits: state.crash_loop.exits,
                seconds: wait.as_secs() + 1,
                last: state
                    .last_failure
                    .clone()
                    .unwrap_or_else(|| "no FATAL message in its log".into()),
            });
        }
        pg.clear_stale_pid_file();
        // A fresh start reconnects before it may be said not to stream.
        state.not_streaming_since = None;
        state.crash_loop.started = Some(Instant::now());
        let mut child = pg.start()?;
        let ready = pg.wait_ready_child(&mut child, STARTUP_TIMEOUT);
        state.child = Some(child);
        if let Err(e) = &ready {
            state.last_failure = Some(e.to_string());
        }
        ready?;
    }
    state.restart_token = Some(spec.restart_token.clone());
    if spec.discard_older_majors && !state.older_majors_discarded {
        state.older_majors_discarded = true;
        let tablespaces: Vec<_> = spec
            .tablespaces
            .iter()
            .map(|t| t.location.clone())
            .collect();
        crate::major_upgrade::discard_older_majors(&pg, spec.major, &tablespaces);
    }
    let client = connect(&pg, "postgres").await?;
    let mut status = observe(&client, &spec.name, pg.postmaster_pid()).await?;
    if recovery_bootstrap && !state.recovery_done && status.is_primary {
        // Promoted by itself at the target: restart without the recovery settings before
        // anything else (next pass), then initialize.
        state.recovery_done = true;
        status.ready = false;
        status.error = Some("recovery ended: restarting without the recovery settings".into());
        status.applied_generation = spec.generation;
        status.restart_token = spec.restart_token.clone();
        return Ok(status);
    }
    if recovery_bootstrap && !state.recovery_done {
        // PostgreSQL promotes itself at the recovery target.
        status.error = Some(format!(
            "recovering from the object store: replaying WAL (at {}){}",
            status
                .replay_lsn
                .map(|l| l.to_string())
                .unwrap_or_else(|| "-".into()),
            state
                .last_failure
                .as_deref()
                .map(|f| format!("; the last attempt stopped: {f}"))
                .unwrap_or_default()
        ));
        status.applied_generation = spec.generation;
        status.restart_token = spec.restart_token.clone();
        return Ok(status);
    }
    state.last_failure = None;
    // Promoted with a token once it has replayed past it; until then it follows on and says
    // what it waits for.
    let mut waiting_for_token = None;
    let mut designated = designated;
    if let Some(token) = following
        .and_then(|u| u.promotion_token.as_deref())
        .filter(|_| !status.is_primary)
    {
        match crate::demotion::promotion_blocked(&pg, &client, token).await {
            Ok(None) => {
                crate::demotion::promoted(&pg, Some(token))?;
                designated = false;
            }
            Ok(Some(why)) => waiting_for_token = Some(why),
            Err(e) => waiting_for_token = Some(e.to_string()),
        }
    }
    let promoted = spec.role == DesiredRole::Primary && !status.is_primary && !designated;
    if promoted {
        tracing::info!("promoting");
        crate::demotion::promoted(&pg, None)?;
        let in_production = pg
            .control_file()
            .is_some_and(|c| c.state == pgherd_postgres::control_file::DbState::InProduction);
        if !in_production {
            pg.promote(Duration::from_secs(60))?;
        }
        tracing::info!("promoted");
        // pg_ctl returns when the control file says "in production", a moment before
        // sessions see the end of recovery: report the role once they do, never a replica
        // that is no longer one (promoting again would fail).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            status = observe(&client, &spec.name, pg.postmaster_pid()).await?;
            if status.is_primary || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    if status.is_primary {
        // Report the role at once (a promotion is waited for), then the duties, which may
        // take a while.
        if promoted {
            let mut early = status.clone();
            early.ready = true;
            early.applied_generation = spec.generation;
            early.restart_token = spec.restart_token.clone();
            publish(shared, early);
        }
        // A new cluster is not ready before its bootstrap SQL has run.
        let marker = pg.pgdata.join(INITIALIZED_MARKER);
        if !marker.exists() {
            initialize_application(&pg, &spec.bootstrap).await?;
            pg.write_file(INITIALIZED_MARKER, "")?;
        }
        // The role is reported even when a duty fails (e.g. a write waiting for synchronous
        // standbys that are still being re-pointed): the controller needs to see it.
        if let Err(e) = primary_duties(spec, &pg, &client, &mut status).await {
            status.error = Some(e.to_string());
        }
        if let Some(e) = state.applied.converge(&pg, &client, spec).await {
            status.error = Some(e);
        }
        let (publications, subscriptions) =
            state
                .logical
                .converge(&pg, &spec.publications, &spec.subscriptions);
        status.publication_results = publications;
        status.subscription_results = subscriptions;
    }
    if designated && !status.is_primary {
        // Leads its cluster as a standby of the source: its replicas stream from it.
        status.designated_primary = true;
        if let Err(e) = sync_slots(spec, &client).await {
            status.error = Some(e.to_string());
        }
        if let Some(why) = waiting_for_token {
            status.error = Some(why);
        }
    }
    status.demotion_token = crate::demotion::issued(&pg);
    status.promoted_with = crate::demotion::promoted_with(&pg);
    // A designated primary serves reads whether it streams from its source or restores its
    // WAL from the source's object store.
    status.ready = status.is_primary || status.is_wal_receiver_active || status.designated_primary;
    status.following = spec.primary.as_ref().map(|p| p.name.clone());
    if status.is_primary || status.is_wal_receiver_active {
        state.not_streaming_since = None;
    } else if let Some(primary) = &spec.primary {
        // A replica that runs but does not stream says why (its WAL receiver's errors are
        // only in PostgreSQL's log), once it is more than a reconnection.
        let since = *state.not_streaming_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= NOT_STREAMING_GRACE {
            if let Some(line) = pg.divergence() {
                // It replayed WAL the new primary never had (not acknowledged: the promoted
                // replica had every acknowledged commit): waiting cannot help. Stop and rejoin
                // as a former primary does (pg_rewind, else a new clone, the data set aside).
                tracing::info!(
                    "diverged from {}'s timeline ({line}): rejoining",
                    primary.name
                );
                state.stop(&pg);
                pg.remove_standby_signal()?;
                state.not_streaming_since = None;
                status.error = Some(format!(
                    "diverged from {}'s timeline: rejoining",
                    primary.name
                ));
                return Ok(status);
            }
        }
        if since.elapsed() >= NOT_STREAMING_GRACE && status.error.is_none() {
            status.error = Some(format!(
                "not streaming from {} for {} s{}",
                primary.name,
                since.elapsed().as_secs(),
                pg.last_fatal()
                    .map(|f| format!("; the last FATAL in its log: {f}"))
                    .unwrap_or_default()
            ));
        }
    }
    status.disk_full = pg.disk_nearly_full();
    // A replica cluster's designated primary archives too (`archive_mode = always`).
    if status.leads() && spec.wal_store.is_some() {
        let report = crate::wal::last_archive_report(&spec.socket_dir);
        status.archive = Some(match archiver_stat(&client).await {
            Some(stat) => crate::wal::with_archiver_stat(report, &stat),
            None => report,
        });
    }
    status.applied_generation = spec.generation;
    status.restart_token = spec.restart_token.clone();
    Ok(status)
}

/// How often the loop looks for a changed spec or an exited postmaster.
const TICK: Duration = Duration::from_millis(50);
/// How often PostgreSQL is observed (and the spec converged) when nothing changed.
const CONVERGE_EVERY: Duration = Duration::from_secs(1);

/// Run until `stop` turns true; then stop PostgreSQL (fast) and return.
pub async fn run(
    spec_path: PathBuf,
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), InstanceError> {
    let mut state = State::default();
    let mut last_spec: Option<InstanceSpec> = None;
    let mut last_converge: Option<Instant> = None;
    loop {
        let spec = load_spec(&spec_path);
        match &spec {
            Ok(spec) => {
                let changed = last_spec.as_ref() != Some(spec);
                let exited = state
                    .child
                    .as_mut()
                    .is_some_and(|c| !matches!(c.try_wait(), Ok(None)));
                let due = last_converge.is_none_or(|t| t.elapsed() >= CONVERGE_EVERY);
                if changed || exited || due {
                    match converge(spec, &mut state, &shared).await {
                        Ok(status) => {
                            state.logged_error = None;
                            publish(&shared, status);
                        }
                        Err(e) => {
                            let error = e.to_string();
                            // In the log once per distinct error, not only in the status: a
                            // manager that cannot progress says why in `kubectl logs` too.
                            if state.logged_error.as_deref() != Some(error.as_str()) {
                                tracing::warn!("{error}");
                                state.logged_error = Some(error.clone());
                            }
                            publish(
                                &shared,
                                InstanceStatus {
                                    stuck: e.needs_user(),
                                    ..down_status(spec, Some(error))
                                },
                            );
                        }
                    }
                    last_converge = Some(Instant::now());
                    last_spec = Some(spec.clone());
                }
            }
            Err(e) => {
                if let Some(spec) = &last_spec {
                    publish(
                        &shared,
                        InstanceStatus {
                            stuck: e.needs_user(),
                            ..down_status(spec, Some(e.to_string()))
                        },
                    );
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.changed() => {}
        }
        if *stop.borrow() {
            if let Some(pg) = last_spec.as_ref().and_then(|s| postgres_for(s).ok()) {
                state.stop(&pg);
            }
            return Ok(());
        }
    }
}
