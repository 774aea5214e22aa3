//! `pgherd local ...`: wiring of the local platform.

use anyhow::{bail, Context as _};
use clap::{Args, Subcommand};
use pgherd_local::instances::{running_pid, stop};
use pgherd_local::plane::{ControlPlane, Plane};
use pgherd_local::state::{read_json, StateDir, DEFAULT_NAMESPACE};
use pgherd_local::status::LocalClusterStatus;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use super::local_apply::{apply, ensure_control_plane};
use super::local_status::{status, wait_healthy};

#[derive(Debug, Args)]
pub struct LocalOptions {
    /// State directory (default: $PGHERD_STATE_DIR, else /var/lib/pgherd as root, else
    /// $XDG_STATE_HOME/pgherd, else ~/.local/state/pgherd).
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    /// Operating-system user PostgreSQL runs as when pgherd runs as root.
    #[arg(long, global = true, default_value = "postgres")]
    pub(super) postgres_user: String,
    /// Directory of the PostgreSQL server binaries (default: found from the image's major).
    #[arg(long, global = true)]
    pub(super) postgres_bin: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start the control plane (if not running), apply FILE, wait until healthy.
    Up {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
        /// Return as soon as the objects are applied.
        #[arg(long)]
        detach: bool,
        /// How long to wait for the clusters to become healthy.
        #[arg(long, default_value = "300")]
        timeout_seconds: u64,
    },
    /// Create or update objects.
    Apply {
        #[arg(short = 'f', long = "filename", required = true)]
        files: Vec<String>,
    },
    /// Cluster status.
    Status {
        name: Option<String>,
        #[arg(short = 'o', long = "output")]
        output: Option<String>,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// More detail; repeat for more (-v: replication slots, managed roles, tablespaces,
        /// conditions; -v -v: certificates too), as `kubectl cnpg status`.
        #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
        verbose: u8,
    },
    /// Objects as stored, Kubernetes-shaped (Secrets with base64 `data`), with their status.
    Get {
        kind: String,
        name: Option<String>,
        #[arg(short = 'o', long = "output", default_value = "yaml")]
        output: String,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Delete an object. A Cluster's instances are stopped and their data removed, as
    /// CloudNativePG removes its PVCs; `--keep-data` keeps it (a new Cluster of that name then
    /// refuses to start over it).
    Delete {
        kind: String,
        name: String,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        /// Keep a deleted Cluster's data directories.
        #[arg(long)]
        keep_data: bool,
    },
    /// Restart (`kubectl cnpg restart`): with CLUSTER only, a rolling restart (replicas one at
    /// a time, then the primary: in place, or a switchover first under
    /// `primaryUpdateMethod: switchover`); with INSTANCE (name or serial) or `--primary`, that
    /// one instance restarted in place.
    Restart {
        cluster: String,
        /// The instance to restart alone (`<cluster>-2` or `2`).
        instance: Option<String>,
        /// Restart the current primary alone, in place.
        #[arg(long, conflicts_with = "instance")]
        primary: bool,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Switchover: make INSTANCE the primary (`kubectl cnpg promote`); waits until it is.
    Promote {
        cluster: String,
        instance: String,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        #[arg(long, default_value = "60")]
        timeout_seconds: u64,
    },
    /// Take a base backup (`kubectl cnpg backup`): creates a Backup object and follows it.
    Backup {
        cluster: String,
        /// The Backup's name (default `<cluster>-<YYYYMMDDhhmmss>`).
        #[arg(long)]
        backup_name: Option<String>,
        /// `primary` or `prefer-standby` (default: the cluster's `spec.backup.target`).
        #[arg(long, value_parser = ["primary", "prefer-standby"])]
        backup_target: Option<String>,
        /// `barmanObjectStore` or `plugin` (default: how the cluster archives).
        #[arg(short = 'm', long, value_parser = ["barmanObjectStore", "plugin"])]
        method: Option<String>,
        /// The plugin's name with `--method plugin`.
        #[arg(long)]
        plugin_name: Option<String>,
        /// Return once the Backup is created.
        #[arg(long)]
        no_wait: bool,
        #[arg(long, default_value = "3600")]
        timeout_seconds: u64,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Fence an instance (`*` for all): stop its PostgreSQL and keep it stopped
    /// (`cnpg.io/fencedInstances`). A fenced primary is not failed over.
    Fence {
        cluster: String,
        instance: String,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Lift the fencing of an instance (`*` for all).
    Unfence {
        cluster: String,
        instance: String,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Hibernate a cluster (`kubectl cnpg hibernate on|off`, `cnpg.io/hibernation`): `on` stops
    /// PostgreSQL on every instance and keeps the data and the primary; `off` starts the
    /// primary, then the replicas.
    Hibernate {
        state: super::plugin_args::OnOff,
        cluster: String,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
    },
    /// Stop everything, keep the data; `local up` resumes it.
    Down,
    /// Stop everything and delete the state directory.
    Destroy,
    /// psql against the cluster's rw (or ro) endpoint as the application user.
    Psql {
        cluster: String,
        #[arg(long)]
        ro: bool,
        /// As `postgres` with the superuser Secret (needs `spec.enableSuperuserAccess: true`).
        #[arg(long)]
        superuser: bool,
        #[arg(short = 'n', long = "namespace", default_value = DEFAULT_NAMESPACE)]
        namespace: String,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Run the control plane in the foreground (started by `local up`).
    #[command(hide = true)]
    Controller,
}

fn state_dir(options: &LocalOptions) -> StateDir {
    let root = options
        .state_dir
        .clone()
        .or_else(|| std::env::var_os("PGHERD_STATE_DIR").map(PathBuf::from))
        // As root, a system location: PostgreSQL runs as an unprivileged user, which cannot
        // enter root's home (mode 0700).
        .or_else(|| {
            nix::unistd::geteuid()
                .is_root()
                .then(|| PathBuf::from("/var/lib/pgherd"))
        })
        .or_else(|| std::env::var_os("XDG_STATE_HOME").map(|d| PathBuf::from(d).join("pgherd")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state/pgherd")))
        .unwrap_or_else(|| PathBuf::from(".pgherd-state"));
    StateDir::new(root)
}

/// The object names a command was given, as (what, name).
fn names_of(command: &LocalCommand) -> Vec<(&'static str, &str)> {
    use LocalCommand as C;
    match command {
        C::Status {
            name, namespace, ..
        } => {
            let mut names = vec![("namespace", namespace.as_str())];
            names.extend(name.as_deref().map(|n| ("cluster", n)));
            names
        }
        C::Get {
            name, namespace, ..
        } => {
            let mut names = vec![("namespace", namespace.as_str())];
            names.extend(name.as_deref().map(|n| ("name", n)));
            names
        }
        C::Delete {
            name, namespace, ..
        } => vec![("name", name), ("namespace", namespace)],
        C::Restart {
            cluster, namespace, ..
        }
        | C::Psql {
            cluster, namespace, ..
        } => {
            vec![("cluster", cluster), ("namespace", namespace)]
        }
        C::Promote {
            cluster,
            instance,
            namespace,
            ..
        } => {
            vec![
                ("cluster", cluster),
                ("instance", instance),
                ("namespace", namespace),
            ]
        }
        C::Fence {
            cluster,
            instance,
            namespace,
        }
        | C::Unfence {
            cluster,
            instance,
            namespace,
        } => {
            let mut names = vec![("cluster", cluster.as_str()), ("namespace", namespace)];
            if instance != "*" {
                names.push(("instance", instance));
            }
            names
        }
        C::Backup {
            cluster,
            backup_name,
            namespace,
            ..
        } => {
            let mut names = vec![("cluster", cluster.as_str()), ("namespace", namespace)];
            names.extend(backup_name.as_deref().map(|n| ("backup name", n)));
            names
        }
        C::Hibernate {
            cluster, namespace, ..
        } => vec![("cluster", cluster), ("namespace", namespace)],
        C::Up { .. } | C::Apply { .. } | C::Down | C::Destroy | C::Controller => Vec::new(),
    }
}

pub fn run(options: &LocalOptions, command: LocalCommand) -> anyhow::Result<ExitCode> {
    // Names become paths in the state directory: the same rule as Kubernetes' object names,
    // checked once for every verb.
    for (what, name) in names_of(&command) {
        if !pgherd_api::validate::is_dns1123_subdomain(name) {
            eprintln!("invalid {what} {name:?}: names are lowercase letters, digits, '-' and '.', starting and ending with a letter or digit (at most 253 characters)");
            return Ok(ExitCode::from(1));
        }
    }
    let state = state_dir(options);
    match command {
        LocalCommand::Up {
            files,
            detach,
            timeout_seconds,
        } => {
            let applied = apply(&state, &files)?;
            let Some(applied) = applied else {
                return Ok(ExitCode::from(1));
            };
            ensure_control_plane(&state, options)?;
            if detach {
                return Ok(ExitCode::SUCCESS);
            }
            wait_healthy(&state, &applied, Duration::from_secs(timeout_seconds))
        }
        LocalCommand::Apply { files } => Ok(match apply(&state, &files)? {
            Some(_) => {
                if running_pid(&state.control_plane_pid()).is_none() {
                    eprintln!("note: the control plane is not running; `pgherd local up -f FILE` starts it");
                }
                ExitCode::SUCCESS
            }
            None => ExitCode::from(1),
        }),
        LocalCommand::Status {
            name,
            output,
            namespace,
            verbose,
        } => status(&state, name, output.as_deref(), &namespace, verbose),
        LocalCommand::Get {
            kind,
            name,
            output,
            namespace,
        } => {
            let Some(kind) = pgherd_local::apply::resolve_kind(&kind) else {
                eprintln!(
                    "unknown kind {kind:?}; use one of: {}",
                    pgherd_api::object::KINDS.join(", ").to_ascii_lowercase()
                );
                return Ok(ExitCode::from(1));
            };
            let objects = pgherd_local::apply::get(&state, kind, &namespace, name.as_deref())?;
            if name.is_some() && objects.is_empty() {
                eprintln!(
                    "{kind} {:?} not found in namespace {namespace}",
                    name.unwrap_or_default()
                );
                return Ok(ExitCode::from(1));
            }
            let value = if name.is_some() {
                objects.into_iter().next().unwrap_or_default()
            } else {
                serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects})
            };
            match output.as_str() {
                "json" => outln!("{}", serde_json::to_string_pretty(&value)?),
                "yaml" => out!("{}", serde_yaml_ng::to_string(&value)?),
                other => bail!("unknown output format {other:?}; use json or yaml"),
            }
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Delete {
            kind,
            name,
            namespace,
            keep_data,
        } => {
            let Some(kind) = pgherd_local::apply::resolve_kind(&kind) else {
                eprintln!("unknown kind {kind:?}");
                return Ok(ExitCode::from(1));
            };
            if !pgherd_local::apply::delete(&state, kind, &namespace, &name)? {
                eprintln!("{kind} {name:?} not found in namespace {namespace}");
                return Ok(ExitCode::from(1));
            }
            if kind == "Cluster" {
                let dir = state.cluster_dir(&namespace, &name);
                stop_cluster(&dir);
                if keep_data {
                    outln!("{kind}/{name} deleted; its instances are stopped and its data is kept in {} (a new Cluster of this name will not start over it)", dir.display());
                } else {
                    // A pass of the control plane that read the object before it went may
                    // still have started something: wait it out, stop again, then remove.
                    std::thread::sleep(Duration::from_secs(1));
                    stop_cluster(&dir);
                    pgherd_local::sockets::remove_cluster(&dir);
                    if state.has(&dir)? {
                        std::fs::remove_dir_all(&dir)
                            .with_context(|| format!("cannot remove {}", dir.display()))?;
                    }
                    let _ = std::fs::remove_file(state.status_path("Cluster", &namespace, &name));
                    let _ = std::fs::remove_file(
                        state.resource_status_path("Cluster", &namespace, &name),
                    );
                    outln!("{kind}/{name} deleted with its data");
                }
            } else {
                outln!("{kind}/{name} deleted");
            }
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Restart {
            cluster,
            instance,
            primary,
            namespace,
        } => super::local_ha::restart(&state, &namespace, &cluster, instance.as_deref(), primary),
        LocalCommand::Promote {
            cluster,
            instance,
            namespace,
            timeout_seconds,
        } => super::local_ha::promote(
            &state,
            &namespace,
            &cluster,
            &instance,
            Duration::from_secs(timeout_seconds),
        ),
        LocalCommand::Backup {
            cluster,
            backup_name,
            backup_target,
            method,
            plugin_name,
            no_wait,
            timeout_seconds,
            namespace,
        } => {
            let method = method.map(|m| {
                if m == "plugin" {
                    pgherd_api::kinds::backup::BackupMethod::Plugin
                } else {
                    pgherd_api::kinds::backup::BackupMethod::BarmanObjectStore
                }
            });
            let target = backup_target.map(|t| {
                if t == "primary" {
                    pgherd_api::cluster::BackupTarget::Primary
                } else {
                    pgherd_api::cluster::BackupTarget::PreferStandby
                }
            });
            ensure_control_plane(&state, options)?;
            super::local_backup::backup(
                &state,
                &super::local_backup::BackupRequest {
                    cluster,
                    namespace,
                    name: backup_name,
                    target,
                    method,
                    plugin_name,
                    wait: !no_wait,
                    timeout: Duration::from_secs(timeout_seconds),
                },
            )
        }
        LocalCommand::Fence {
            cluster,
            instance,
            namespace,
        } => super::local_ha::fence(&state, &namespace, &cluster, &instance, true),
        LocalCommand::Unfence {
            cluster,
            instance,
            namespace,
        } => super::local_ha::fence(&state, &namespace, &cluster, &instance, false),
        LocalCommand::Hibernate {
            state: on_off,
            cluster,
            namespace,
        } => super::local_ha::hibernate(
            &state,
            &namespace,
            &cluster,
            matches!(on_off, super::plugin_args::OnOff::On),
        ),
        LocalCommand::Down => {
            down(&state)?;
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Destroy => {
            down(&state)?;
            pgherd_local::sockets::remove_all(&state);
            if state.root.exists() {
                std::fs::remove_dir_all(&state.root)
                    .with_context(|| format!("cannot remove {}", state.root.display()))?;
            }
            outln!("destroyed {}", state.root.display());
            Ok(ExitCode::SUCCESS)
        }
        LocalCommand::Psql {
            cluster,
            ro,
            superuser,
            namespace,
            args,
        } => psql(&state, &cluster, (ro, superuser), &namespace, &args),
        LocalCommand::Controller => controller(&state, options),
    }
}

/// Stop the PgBouncers and instances of the cluster whose directory is `dir`.
fn stop_cluster(dir: &std::path::Path) {
    pgherd_local::pooler_files::stop_cluster_poolers(dir);
    pgherd_local::instances::stop_cluster(dir);
}

/// Stop everything of `state`; an error when something could not be stopped (another user's
/// processes: permission denied), rather than a "stopped" that is not true.
fn down(state: &StateDir) -> anyhow::Result<()> {
    if let Some(pid) = running_pid(&state.control_plane_pid()) {
        let raw = i32::try_from(pid).unwrap_or(i32::MAX);
        if let Err(nix::errno::Errno::EPERM) =
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None)
        {
            bail!(
                "permission denied: the control plane of {} (pid {pid}) runs as another user; run this command as that user (e.g. with sudo)",
                state.root.display()
            );
        }
        if !stop(pid, Duration::from_secs(30)) {
            bail!(
                "the control plane (pid {pid}) did not stop within 30 s; see {}",
                state.control_plane_log().display()
            );
        }
    }
    let clusters = state.root.join("clusters");
    for ns in std::fs::read_dir(&clusters).into_iter().flatten().flatten() {
        for cluster in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
            stop_cluster(&cluster.path());
            for instance in std::fs::read_dir(cluster.path().join("instances"))
                .into_iter()
                .flatten()
                .flatten()
            {
                if !pgherd_local::instances::is_dead(&instance.path()) {
                    bail!(
                        "{} still runs after the stop (permission denied?); run this command as the user that started it",
                        instance.path().display()
                    );
                }
            }
        }
    }
    outln!("stopped; data kept in {}", state.root.display());
    Ok(())
}

fn psql(
    state: &StateDir,
    cluster: &str,
    (ro, superuser): (bool, bool),
    namespace: &str,
    args: &[String],
) -> anyhow::Result<ExitCode> {
    let Some(status) =
        read_json::<LocalClusterStatus>(&state.status_path("Cluster", namespace, cluster))?
    else {
        eprintln!("cluster {cluster:?} not found in namespace {namespace}");
        return Ok(ExitCode::from(1));
    };
    let endpoint = status
        .endpoints
        .get(if ro { "ro" } else { "rw" })
        .cloned()
        .unwrap_or_default();
    let (host, port) = endpoint.rsplit_once(':').unwrap_or(("127.0.0.1", "5432"));
    // The application Secret the cluster really uses (`bootstrap.initdb.secret` when the user
    // gave one); its database from the spec when the Secret does not say.
    let object: Option<pgherd_api::cluster::Cluster> =
        read_json(&state.object_path("Cluster", namespace, cluster))?;
    let (database, owner, secret_name) = match &object {
        Some(c) if superuser => {
            if c.spec.enable_superuser_access != Some(true) {
                eprintln!("superuser access to {cluster} is disabled (spec.enableSuperuserAccess is false): enable it, or connect as the application user without --superuser");
                return Ok(ExitCode::from(1));
            }
            let secret = c
                .spec
                .superuser_secret
                .as_ref()
                .map_or_else(|| format!("{cluster}-superuser"), |s| s.name.clone());
            ("postgres".into(), "postgres".into(), secret)
        }
        Some(c) => pgherd_local::desired::application(c),
        None => ("app".into(), "app".into(), format!("{cluster}-app")),
    };
    let secret = pgherd_local::secrets::read(state, namespace, &secret_name)?.unwrap_or_default();
    let get = |k: &str, default: &str| {
        secret
            .get(k)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| default.to_string())
    };
    use std::os::unix::process::CommandExt;
    let err = std::process::Command::new("psql")
        .env("PGHOST", host)
        .env("PGPORT", port)
        .env("PGUSER", get("username", &owner))
        .env("PGPASSWORD", get("password", ""))
        .env(
            "PGDATABASE",
            // The superuser Secret's dbname is `*` (any database).
            Some(get("dbname", &database))
                .filter(|d| d != "*")
                .unwrap_or(database),
        )
        .env("PGSSLMODE", "require")
        .args(args)
        .exec();
    bail!("cannot run psql: {err}")
}

fn controller(state: &StateDir, options: &LocalOptions) -> anyhow::Result<ExitCode> {
    if let Some(pid) = running_pid(&state.control_plane_pid()) {
        if pid != std::process::id() {
            bail!(
                "another control plane (pid {pid}) already manages {}",
                state.root.display()
            );
        }
    }
    pgherd_local::state::write_atomic(
        &state.control_plane_pid(),
        format!("{}\n", std::process::id()).as_bytes(),
        0o644,
    )?;
    pgherd_local::instances::adopt_orphans();
    let user = pgherd_instance_manager::OsUser::for_postgres(&options.postgres_user)?;
    let mut control = ControlPlane::new(Plane::new(
        state.clone(),
        std::env::current_exe().context("cannot find the pgherd executable")?,
        user,
        options.postgres_bin.clone(),
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        match pgherd_local::plane_metrics::listen(&control.plane.state).await {
            Ok(listener) => {
                tokio::spawn(pgherd_local::plane_metrics::serve(
                    listener,
                    control.plane.metrics.clone(),
                ));
            }
            Err(e) => eprintln!("control plane metrics: {e}"),
        }
        loop {
            // Each cluster has its own task, with its own pace; this pass starts tasks for new
            // clusters and runs the poolers.
            if let Err(e) = control.supervise().await {
                eprintln!("control plane: {e}");
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = term.recv() => return Ok(ExitCode::SUCCESS),
                _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
            }
        }
    })
}
