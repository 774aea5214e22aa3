//! The instance manager's loop: read the desired [`InstanceSpec`], converge PostgreSQL to it
//! (bootstrap, configuration, start after a crash, promotion, slots), and publish the observed
//! [`InstanceStatus`]. One iteration per second, or sooner when asked to stop.

use crate::bootstrap::{create_data, initialize_application, primary_source, STARTUP_TIMEOUT};
use crate::observe::{connect, observe};
use crate::replication::{drop_slot, ensure_replication_role, ensure_slot};
use crate::{InstanceError, OsUser, PgBinaries, Postgres, ShutdownMode};
use pgherd_instance_protocol::{DesiredRole, InstanceSpec, InstanceStatus, Role};
use pgherd_postgres::conf::{render_hba, render_ident};
use pgherd_postgres::MajorVersion;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Marker written once the application database of a new cluster exists.
const INITIALIZED_MARKER: &str = "pgherd.initialized";

/// What the HTTP server shows.
#[derive(Debug, Default)]
pub struct Published {
    pub status: Option<InstanceStatus>,
}

/// Shared between the loop and the HTTP server.
pub type Shared = Arc<RwLock<Published>>;

/// Read the spec file.
pub fn load_spec(path: &Path) -> Result<InstanceSpec, InstanceError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| InstanceError::io("cannot read", path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| InstanceError::InvalidSetting(format!("{}: {e}", path.display())))
}

fn postgres_for(spec: &InstanceSpec) -> Result<Postgres, InstanceError> {
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
    /// The restart token PostgreSQL was last started under.
    restart_token: Option<String>,
    /// Configuration text last written, to know when a reload is due.
    written_config: Option<String>,
}

fn publish(shared: &Shared, status: InstanceStatus) {
    if let Ok(mut guard) = shared.write() {
        guard.status = Some(status);
    }
}

fn down_status(spec: &InstanceSpec, error: Option<String>) -> InstanceStatus {
    InstanceStatus {
        pod: spec.name.clone(),
        role: Role::Down,
        is_primary: false,
        ready: false,
        current_lsn: None,
        received_lsn: None,
        replay_lsn: None,
        timeline_id: None,
        system_id: None,
        is_wal_receiver_active: false,
        replay_paused: false,
        pending_restart: false,
        postmaster_pid: None,
        replication_info: Vec::new(),
        instance_manager_version: env!("CARGO_PKG_VERSION").to_string(),
        applied_generation: 0,
        restart_token: String::new(),
        error,
        role_results: Vec::new(),
        database_results: Vec::new(),
    }
}

impl State {
    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => match child.try_wait() {
                Ok(None) => true,
                Ok(Some(_)) | Err(_) => {
                    self.child = None;
                    false
                }
            },
            None => false,
        }
    }

    fn stop(&mut self, pg: &Postgres) {
        if self.running() {
            let _ = pg.stop(ShutdownMode::Fast, Duration::from_secs(60));
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }
}

async fn converge(spec: &InstanceSpec, state: &mut State) -> Result<InstanceStatus, InstanceError> {
    let pg = postgres_for(spec)?;
    if spec.fenced {
        state.stop(&pg);
        let mut status = down_status(spec, None);
        status.applied_generation = spec.generation;
        return Ok(status);
    }
    if !pg.is_initialized() {
        create_data(&pg, spec)?;
    }
    let major = MajorVersion(spec.major);
    let mut settings = spec.settings.clone();
    if spec.role == DesiredRole::Replica {
        // A standby cannot run with less than its primary recorded (e.g. while a decrease of
        // max_connections waits for the primary's restart): never go below pg_control.
        for (name, minimum) in pg.controldata_minimums()? {
            let current = settings.get(name).and_then(|v| v.parse::<u64>().ok());
            // Unset means PostgreSQL's default, which may be lower too.
            if current.is_none_or(|v| v < minimum) {
                settings.insert(name.to_string(), minimum.to_string());
            }
        }
    }
    let mut config = pgherd_postgres::conf::render_settings(&settings);
    let hba = render_hba(&spec.pg_hba, major);
    let ident = render_ident(&pg.user.name, &spec.pg_ident);
    config.push_str(&hba);
    config.push_str(&ident);
    if state.written_config.as_deref() != Some(config.as_str()) {
        pg.write_config(&settings, &hba, &ident)?;
        if spec.role == DesiredRole::Replica {
            pg.write_standby_config(&primary_source(spec)?)?;
        }
        if state.running() {
            pg.reload()?;
        }
        state.written_config = Some(config);
    }
    let restart_due = state
        .restart_token
        .as_ref()
        .is_some_and(|t| t != &spec.restart_token);
    if restart_due && state.running() {
        // A rolling restart, or settings that need one: fast stop, then start below.
        state.stop(&pg);
    }
    if !state.running() {
        // First start, restart, or PostgreSQL exited (a crash): start it; crash recovery
        // runs first when needed.
        let mut child = pg.start()?;
        let ready = pg.wait_ready_child(&mut child, STARTUP_TIMEOUT);
        state.child = Some(child);
        ready?;
    }
    state.restart_token = Some(spec.restart_token.clone());
    let client = connect(&pg, "postgres").await?;
    let mut status = observe(&client, &spec.name, pg.postmaster_pid()).await?;
    if spec.role == DesiredRole::Primary && !status.is_primary {
        pg.promote(Duration::from_secs(60))?;
        status = observe(&client, &spec.name, pg.postmaster_pid()).await?;
    }
    if status.is_primary {
        let marker = pg.pgdata.join(INITIALIZED_MARKER);
        if !marker.exists() {
            initialize_application(&pg, &spec.bootstrap).await?;
            pg.write_file(INITIALIZED_MARKER, "")?;
        }
        ensure_replication_role(&client).await?;
        for slot in &spec.replica_slots {
            ensure_slot(&client, slot).await?;
        }
        let rows = client
            .query("SELECT slot_name FROM pg_catalog.pg_replication_slots WHERE slot_type = 'physical'", &[])
            .await
            .map_err(|e| InstanceError::Sql { context: "list slots", message: e.to_string() })?;
        for row in rows {
            let name: String = row.get(0);
            if name.starts_with(&spec.slot_prefix) && !spec.replica_slots.contains(&name) {
                drop_slot(&client, &name).await?;
            }
        }
    }
    if status.is_primary && (!spec.roles.is_empty() || !spec.databases.is_empty()) {
        let (roles, databases) =
            crate::declarative::reconcile(&pg, &spec.roles, &spec.databases).await?;
        status.role_results = roles;
        status.database_results = databases;
    }
    status.ready = status.is_primary || status.is_wal_receiver_active;
    status.applied_generation = spec.generation;
    status.restart_token = spec.restart_token.clone();
    Ok(status)
}

/// Run until `stop` turns true; then stop PostgreSQL (fast) and return.
pub async fn run(
    spec_path: PathBuf,
    shared: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), InstanceError> {
    let mut state = State::default();
    let mut last_spec = None;
    loop {
        let spec = load_spec(&spec_path);
        match &spec {
            Ok(spec) => {
                match converge(spec, &mut state).await {
                    Ok(status) => publish(&shared, status),
                    Err(e) => publish(&shared, down_status(spec, Some(e.to_string()))),
                }
                last_spec = Some(spec.clone());
            }
            Err(e) => {
                if let Some(spec) = &last_spec {
                    publish(&shared, down_status(spec, Some(e.to_string())));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
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
