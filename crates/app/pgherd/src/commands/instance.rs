//! `pgherd instance ...`: wiring of the instance manager (HTTP server + loop) and of the
//! commands PostgreSQL runs (`archive_command`, `restore_command`).

use anyhow::Context as _;
use clap::Subcommand;
use pgherd_instance_manager::{http, supervisor, wal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tracing::Instrument as _;

#[derive(Debug, Subcommand)]
pub enum InstanceCommand {
    /// Run one instance manager: converge PostgreSQL to the spec file and serve its status.
    Run {
        /// The instance spec (JSON) written by the controller; re-read every second.
        #[arg(long)]
        spec: PathBuf,
        /// The spec arrives over the instance protocol (`PUT /pg/spec`, from the controller's
        /// certificate only) and is kept at `--spec` (on Kubernetes): the status endpoint
        /// serves on `$POD_IP` (port `--status-port`) with the certificates in this directory
        /// (`ca.crt`, `server.crt`, `server.key`) from the start; PostgreSQL waits for a spec.
        #[arg(long)]
        pushed_with_certificates: Option<PathBuf>,
        /// The status port in pushed mode.
        #[arg(long, default_value_t = 8000)]
        status_port: u16,
    },
    /// PostgreSQL's `archive_command`: upload one WAL file (and other ready ones, up to
    /// `wal.maxParallel`) to the object store. Run in PGDATA.
    WalArchive {
        /// The object store file (JSON, mode 0600) written by the platform.
        #[arg(long)]
        store: PathBuf,
        /// Where files uploaded ahead of their turn are remembered.
        #[arg(long)]
        spool: PathBuf,
        /// Where the outcome is recorded for the instance manager.
        #[arg(long)]
        report: Option<PathBuf>,
        /// Archive even into a folder that already holds WAL (`cnpg.io/skipEmptyWalArchiveCheck`).
        #[arg(long)]
        skip_empty_check: bool,
        /// `%p`
        wal_path: PathBuf,
    },
    /// Upload WAL files PostgreSQL marked ready, in parallel, ahead of its archiver (started
    /// by `wal-archive` when `wal.maxParallel` > 1; exits when idle).
    #[command(hide = true)]
    WalShip {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        spool: PathBuf,
        #[arg(long)]
        pgdata: PathBuf,
    },
    /// PostgreSQL's `restore_command`: fetch one WAL file from the object store (prefetching the
    /// next ones, up to `wal.maxParallel`). Exit 1 when the archive does not have it.
    WalRestore {
        #[arg(long)]
        store: PathBuf,
        /// Where prefetched segments wait for their turn.
        #[arg(long)]
        spool: PathBuf,
        /// WAL segment size in bytes.
        #[arg(long, default_value_t = 16 * 1024 * 1024)]
        segment_size: u64,
        /// `%f`
        name: String,
        /// `%p`
        dest: PathBuf,
    },
    /// Take a base backup of the local PostgreSQL into the object store (barman-cloud layout);
    /// progress and outcome go to the report file. Run as the PostgreSQL user.
    Backup {
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        pgdata: PathBuf,
        /// PostgreSQL's socket directory.
        #[arg(long)]
        socket_dir: PathBuf,
        #[arg(long)]
        port: u16,
        /// Recorded as the backup's name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        report: PathBuf,
    },
    /// Upgrade the stopped instance's data to a newer major with `pg_upgrade` (the major-upgrade
    /// job, run as the PostgreSQL user while every instance of the cluster is stopped); the
    /// outcome goes to `major-upgrade.json` beside PGDATA.
    ///
    /// Either the instance's spec (`--spec`, the local platform), or its data and the old
    /// major's binaries copied by `instance prepare-upgrade` (`--pgdata`, `--from-major`,
    /// `--old-binaries`: the Kubernetes job, whose image has only the new major).
    Upgrade {
        /// The instance's spec (the old major's).
        #[arg(long, required_unless_present = "pgdata", conflicts_with_all = ["pgdata", "from_major", "old_binaries"])]
        spec: Option<PathBuf>,
        #[arg(long, requires_all = ["from_major", "old_binaries"])]
        pgdata: Option<PathBuf>,
        /// The data's major.
        #[arg(long)]
        from_major: Option<u32>,
        /// Where `instance prepare-upgrade` copied the old major's installation.
        #[arg(long)]
        old_binaries: Option<PathBuf>,
        /// The directory of PostgreSQL's socket while the old server is read.
        #[arg(long, env = "PGHOST", default_value = "/tmp")]
        socket_dir: PathBuf,
        #[arg(long, env = "PGPORT", default_value_t = 5432)]
        port: u16,
        #[arg(long)]
        to_major: u32,
    },
    /// Copy this image's PostgreSQL installation (`pg_config`'s bindir, pkglibdir and
    /// sharedir) into a directory, for a major-upgrade job running the next image
    /// (`instance upgrade --old-binaries`).
    PrepareUpgrade {
        #[arg(long)]
        into: PathBuf,
    },
    /// Restore a base backup from the object store into an empty directory.
    Restore {
        #[arg(long)]
        store: PathBuf,
        /// A backup id, a backup name, or `latest`.
        #[arg(long, default_value = "latest")]
        backup: String,
        #[arg(long)]
        pgdata: PathBuf,
    },
}

pub fn dispatch(command: InstanceCommand) -> anyhow::Result<ExitCode> {
    match command {
        InstanceCommand::Run {
            spec,
            pushed_with_certificates,
            status_port,
        } => run(
            &spec,
            pushed_with_certificates.map(|certificates| Pushed {
                certificates,
                status_port,
            }),
        ),
        InstanceCommand::WalArchive {
            store,
            spool,
            report,
            skip_empty_check,
            wal_path,
        } => {
            let request = wal::ArchiveRequest {
                store_file: store,
                wal_path,
                pgdata: std::env::current_dir().context("no working directory")?,
                spool,
                report,
                skip_empty_check,
            };
            current_thread()?.block_on(wal::archive(&request))?;
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Backup {
            store,
            pgdata,
            socket_dir,
            port,
            name,
            report,
        } => {
            let request = pgherd_instance_manager::base_backup::BackupRequest {
                store_file: store,
                pgdata,
                socket_dir,
                port,
                backup_name: name,
                report,
            };
            let done = current_thread()?
                .block_on(pgherd_instance_manager::base_backup::run_backup(&request))?;
            println!(
                "backup {} completed",
                done.backup_id.as_deref().unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Upgrade {
            spec,
            pgdata,
            from_major,
            old_binaries,
            socket_dir,
            port,
            to_major,
        } => {
            let pg = match (spec, pgdata, from_major, old_binaries) {
                (Some(spec), ..) => supervisor::postgres_for(&supervisor::load_spec(&spec)?)?,
                (None, Some(pgdata), Some(major), Some(old)) => {
                    pgherd_instance_manager::old_binaries::old_server(
                        pgdata, major, &old, socket_dir, port,
                    )?
                }
                _ => anyhow::bail!("give --spec, or --pgdata with --from-major and --old-binaries"),
            };
            current_thread()?.block_on(pgherd_instance_manager::major_upgrade::run_job(
                &pg, to_major,
            ))?;
            println!("{}: upgraded to PostgreSQL {to_major}", pg.pgdata.display());
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::PrepareUpgrade { into } => {
            let bindir = pgherd_instance_manager::old_binaries::copy_installation(&into)?;
            println!(
                "copied PostgreSQL into {} (bindir {})",
                into.display(),
                bindir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::Restore {
            store,
            backup,
            pgdata,
        } => {
            let target = pgherd_backup::store::StoreTarget::read(&store)?;
            let info =
                current_thread()?.block_on(pgherd_instance_manager::base_backup::restore(
                    &target,
                    Some(&backup),
                    &pgherd_backup::catalog::RecoveryPoint::Latest,
                    None,
                    &pgdata,
                    None,
                    None,
                ))?;
            pgherd_instance_manager::base_backup::sync_filesystem(&pgdata)?;
            println!(
                "restored backup {} into {}",
                info.backup_name().unwrap_or(&backup),
                pgdata.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::WalShip {
            store,
            spool,
            pgdata,
        } => {
            let shipper = wal::Shipper {
                store_file: store,
                spool,
                pgdata,
            };
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .context("cannot start the async runtime")?
                .block_on(shipper.run())?;
            Ok(ExitCode::SUCCESS)
        }
        InstanceCommand::WalRestore {
            store,
            spool,
            segment_size,
            name,
            dest,
        } => {
            let found = current_thread()?.block_on(wal::restore(
                &store,
                &name,
                &dest,
                &spool,
                segment_size,
            ))?;
            if found {
                Ok(ExitCode::SUCCESS)
            } else {
                // PostgreSQL reads a plain failure as "not archived": recovery then streams
                // or ends. Exit codes above 125 would stop it instead.
                Ok(ExitCode::from(1))
            }
        }
    }
}

fn current_thread() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// A manager whose spec arrives over the instance protocol (on Kubernetes).
struct Pushed {
    certificates: PathBuf,
    status_port: u16,
}

/// A required environment variable (set by the pod spec).
fn required_env(name: &str) -> anyhow::Result<String> {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .with_context(|| {
            format!("{name} is not set: a manager that takes its spec over the protocol needs it (the pod spec sets it)")
        })
}

/// Wait for the controller to push the first spec; `None` when asked to stop first.
async fn first_spec(
    spec_path: &Path,
    term: &mut tokio::signal::unix::Signal,
) -> anyhow::Result<Option<pgherd_instance_protocol::InstanceSpec>> {
    loop {
        if spec_path.exists() {
            return Ok(Some(supervisor::load_spec(spec_path)?));
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            _ = term.recv() => return Ok(None),
            _ = tokio::signal::ctrl_c() => return Ok(None),
        }
    }
}

fn run(spec_path: &Path, pushed: Option<Pushed>) -> anyhow::Result<ExitCode> {
    let file_spec = match pushed {
        Some(_) => None,
        None => Some(supervisor::load_spec(spec_path)?),
    };
    let instance = match &file_spec {
        Some(spec) => spec.name.clone(),
        None => required_env("POD_NAME")?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Every line this manager logs names its instance.
    let span = tracing::info_span!("instance", name = %instance);
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let (listener, certificates, sink) = match (&file_spec, &pushed) {
            (Some(spec), _) => (
                listen(&spec.listen_host, spec.status_port, "status", &instance).await?,
                spec.certificates.clone(),
                Some(http::SpecSink::reading(
                    spec_path.to_path_buf(),
                    instance.clone(),
                )),
            ),
            (None, Some(p)) => (
                listen(&required_env("POD_IP")?, p.status_port, "status", &instance).await?,
                pgherd_instance_protocol::CertificatePaths::in_dir(&p.certificates),
                Some(http::SpecSink::new(
                    spec_path.to_path_buf(),
                    instance.clone(),
                )),
            ),
            (None, None) => unreachable!("a spec file or a pushed spec"),
        };
        let shared = supervisor::Shared::default();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let tls = std::sync::Arc::new(
            pgherd_instance_manager::tls::server_config(
                &certificates.server_cert,
                &certificates.server_key,
                &certificates.ca,
            )
            .context("cannot serve the status endpoint over TLS")?,
        );
        let server = tokio::spawn(
            (http::serve(listener, shared.clone(), tls, sink, stop_rx.clone()))
                .instrument(span.clone()),
        );
        let spec = match file_spec {
            Some(spec) => spec,
            None => match first_spec(spec_path, &mut term).await? {
                Some(spec) => spec,
                None => {
                    stop_tx.send(true).ok();
                    server.await.context("status server")??;
                    return Ok(ExitCode::SUCCESS);
                }
            },
        };
        let metrics_listener = if spec.metrics_port == 0 {
            None
        } else {
            Some(listen(&spec.listen_host, spec.metrics_port, "metrics", &instance).await?)
        };
        let metrics = metrics_listener.map(|l| {
            tokio::spawn(
                (pgherd_instance_manager::metrics::serve(
                    spec_path.to_path_buf(),
                    l,
                    stop_rx.clone(),
                ))
                .instrument(span.clone()),
            )
        });
        let liveness = tokio::spawn(
            (supervisor::watch_liveness(spec_path.to_path_buf(), shared.clone(), stop_rx.clone()))
                .instrument(span.clone()),
        );
        let lease = tokio::spawn(
            (pgherd_instance_manager::lease::watch(
                spec_path.to_path_buf(),
                shared.clone(),
                stop_rx.clone(),
            ))
            .instrument(span.clone()),
        );
        let upstream = tokio::spawn(
            (pgherd_instance_manager::upstream::watch(
                spec_path.to_path_buf(),
                shared.clone(),
                stop_rx.clone(),
            ))
            .instrument(span.clone()),
        );
        // The loop runs blocking commands (pg_ctl, pg_rewind, pg_basebackup): on its own
        // thread and runtime, so that they never hold up the status server, the liveness
        // watch or the lease.
        let supervisor = {
            let spec_path = spec_path.to_path_buf();
            std::thread::Builder::new()
                .name("converge".into())
                .spawn(move || -> anyhow::Result<()> {
                    current_thread()?
                        .block_on(supervisor::run(spec_path, shared, stop_rx).instrument(span))?;
                    Ok(())
                })
                .context("cannot start the instance manager loop")?
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        stop_tx.send(true).ok();
        tokio::task::spawn_blocking(move || supervisor.join())
            .await
            .context("instance manager loop")?
            .map_err(|_| anyhow::anyhow!("the instance manager loop panicked"))??;
        liveness.await.context("liveness watch")?;
        lease.await.context("lease watch")?;
        upstream.await.context("upstream watch")?;
        server.await.context("status server")??;
        if let Some(metrics) = metrics {
            metrics.await.context("metrics endpoint")?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// A listener on the instance's address for one of its ports.
async fn listen(
    host: &str,
    port: u16,
    what: &str,
    instance: &str,
) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port} ({what} port of {instance})"))
}
