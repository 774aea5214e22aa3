//! One PostgreSQL server: bootstrap with `initdb`, configuration files, and the postmaster's
//! lifecycle. Every PostgreSQL program runs as the instance's unprivileged [`OsUser`].

use crate::postgres_log::{divergence_in, last_fatal_in};
use crate::{InstanceError, OsUser, PgBinaries};
use pgherd_api::cluster::BootstrapInitDb;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Free space below which an instance's disk counts as full.
pub const DISK_RESERVE: u64 = 64 << 20;

/// How to stop the postmaster (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShutdownMode {
    /// Wait for clients to disconnect.
    Smart,
    /// Disconnect clients, checkpoint, stop.
    Fast,
    /// Stop at once; crash recovery runs at the next start.
    Immediate,
}

impl ShutdownMode {
    fn as_arg(self) -> &'static str {
        match self {
            ShutdownMode::Smart => "smart",
            ShutdownMode::Fast => "fast",
            ShutdownMode::Immediate => "immediate",
        }
    }
}

/// `initdb` options from `bootstrap.initdb`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InitDbOptions {
    pub encoding: Option<String>,
    pub locale: Option<String>,
    pub locale_collate: Option<String>,
    pub locale_ctype: Option<String>,
    pub locale_provider: Option<String>,
    pub icu_locale: Option<String>,
    pub icu_rules: Option<String>,
    pub builtin_locale: Option<String>,
    pub data_checksums: bool,
    /// WAL segment size in MB.
    pub wal_segment_size: Option<i64>,
    /// Raw options (deprecated `options`); when set, the fields above are not used.
    pub raw: Vec<String>,
}

impl InitDbOptions {
    pub fn from_spec(spec: &BootstrapInitDb) -> Self {
        InitDbOptions {
            encoding: spec.encoding.clone(),
            locale: spec.locale.clone(),
            locale_collate: spec.locale_collate.clone(),
            locale_ctype: spec.locale_ctype.clone(),
            locale_provider: spec.locale_provider.clone(),
            icu_locale: spec.icu_locale.clone(),
            icu_rules: spec.icu_rules.clone(),
            builtin_locale: spec.builtin_locale.clone(),
            data_checksums: spec.data_checksums == Some(true),
            wal_segment_size: spec.wal_segment_size,
            raw: spec.options.clone().unwrap_or_default(),
        }
    }

    /// The command-line arguments, each option as one argument (no shell involved).
    pub fn args(&self) -> Result<Vec<String>, InstanceError> {
        if !self.raw.is_empty() {
            return Ok(self.raw.clone());
        }
        let mut args = Vec::new();
        let mut push = |flag: &str, value: &Option<String>| {
            if let Some(v) = value {
                args.push(format!("{flag}={v}"));
            }
        };
        push("--encoding", &self.encoding);
        push("--locale", &self.locale);
        push("--lc-collate", &self.locale_collate);
        push("--lc-ctype", &self.locale_ctype);
        push("--locale-provider", &self.locale_provider);
        push("--icu-locale", &self.icu_locale);
        push("--icu-rules", &self.icu_rules);
        push("--builtin-locale", &self.builtin_locale);
        if self.data_checksums {
            args.push("--data-checksums".to_string());
        }
        if let Some(size) = self.wal_segment_size {
            if !(1..=1024).contains(&size) || size & (size - 1) != 0 {
                return Err(InstanceError::InvalidSetting(format!(
                    "walSegmentSize {size} is not a power of two between 1 and 1024"
                )));
            }
            args.push(format!("--wal-segsize={size}"));
        }
        Ok(args)
    }
}

/// One PostgreSQL server and where its files are.
#[derive(Debug, Clone)]
pub struct Postgres {
    pub binaries: PgBinaries,
    pub pgdata: PathBuf,
    /// Directory of the Unix socket.
    pub socket_dir: PathBuf,
    pub port: u16,
    pub user: OsUser,
    /// Where the postmaster's own output goes.
    pub log_file: PathBuf,
}

pub(crate) fn run(mut command: Command, what: &str) -> Result<String, InstanceError> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| InstanceError::io("cannot run", what, e))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(InstanceError::CommandFailed {
            command: what.to_string(),
            status: out.status.to_string(),
            output: text.trim().to_string(),
        })
    }
}

impl Postgres {
    pub(crate) fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.binaries.bin(program));
        self.user.apply(&mut command);
        // The user must be able to enter the working directory.
        command.current_dir(self.pgdata.parent().unwrap_or(Path::new("/")));
        command.env_remove("PGDATA").env("LC_ALL", "C.UTF-8");
        command
    }

    /// Whether PGDATA holds a cluster.
    pub fn is_initialized(&self) -> bool {
        self.pgdata.join("PG_VERSION").is_file()
    }

    /// Create the cluster with `initdb` (superuser `postgres`). PGDATA must be absent or empty.
    pub fn initdb(&self, options: &InitDbOptions) -> Result<(), InstanceError> {
        self.initdb_with_args(&options.args()?)
    }

    /// `initdb` with precomputed arguments.
    pub fn initdb_with_args(&self, args: &[String]) -> Result<(), InstanceError> {
        self.user.own_dir(&self.pgdata, 0o700)?;
        let mut command = self.command("initdb");
        command
            .arg("--pgdata")
            .arg(&self.pgdata)
            .arg("--username=postgres")
            .arg("--auth-local=peer")
            .arg("--auth-host=scram-sha-256")
            .arg("--no-instructions")
            .args(args);
        run(command, "initdb").map(|_| ())
    }

    /// Write a file inside PGDATA, owned by the instance user, mode 0600.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<(), InstanceError> {
        self.user
            .write_file(&self.pgdata.join(name), contents.as_bytes(), 0o600)
    }

    /// Write the configuration: `postgresql.conf` from `settings` (ending with an include of
    /// `override.conf`, where replication settings go), `pg_hba.conf` and `pg_ident.conf`.
    pub fn write_config(
        &self,
        settings: &std::collections::BTreeMap<String, String>,
        hba: &str,
        ident: &str,
    ) -> Result<(), InstanceError> {
        let mut conf = pgherd_postgres::conf::render_settings(settings);
        conf.push_str("include_if_exists = 'override.conf'\n");
        self.write_file("postgresql.conf", &conf)?;
        self.write_file("pg_hba.conf", hba)?;
        self.write_file("pg_ident.conf", ident)
    }

    /// Start the postmaster as a child process. Its output goes to [`Postgres::log_file`].
    pub fn start(&self) -> Result<Child, InstanceError> {
        self.user.own_dir(&self.socket_dir, 0o700)?;
        if let Some(dir) = self.log_file.parent() {
            self.user.own_dir(dir, 0o700)?;
        }
        let log = self.user.open_log(&self.log_file)?;
        let err_log = log
            .try_clone()
            .map_err(|e| InstanceError::io("cannot open", &self.log_file, e))?;
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-k")
            .arg(&self.socket_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log);
        // Its own process group: signals meant for the instance manager's group (a terminal's
        // Ctrl-C) do not reach it; the manager stops it deliberately.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command
            .spawn()
            .map_err(|e| InstanceError::io("cannot start postgres in", &self.pgdata, e))
    }

    /// Whether the server accepts connections (what `pg_isready` says, over the Unix socket).
    pub fn is_ready(&self) -> bool {
        crate::ping::ping(
            &self.socket_dir,
            self.port,
            &self.user.name,
            Duration::from_secs(1),
        ) == crate::ping::Ping::Accepting
    }

    /// Wait until the server accepts connections.
    pub fn wait_ready(&self, timeout: Duration) -> Result<(), InstanceError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.is_ready() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(InstanceError::NotReady {
            seconds: timeout.as_secs(),
            log: self.log_file.clone(),
        })
    }

    /// Wait until the server accepts connections, failing at once if `child` (its postmaster)
    /// exits first.
    pub fn wait_ready_child(
        &self,
        child: &mut Child,
        timeout: Duration,
    ) -> Result<(), InstanceError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.is_ready() {
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(InstanceError::CommandFailed {
                    command: "postgres".to_string(),
                    status: status.to_string(),
                    output: match self.last_fatal() {
                        Some(fatal) => format!(
                            "PostgreSQL exited during startup: {fatal} (see {})",
                            self.log_file.display()
                        ),
                        None => format!(
                            "PostgreSQL exited during startup; see {}",
                            self.log_file.display()
                        ),
                    },
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(InstanceError::NotReady {
            seconds: timeout.as_secs(),
            log: self.log_file.clone(),
        })
    }

    /// The last `FATAL:` message of the server's logs (the plain and the collector's files
    /// next to `log_file`), for an error that says why it stopped.
    pub fn last_fatal(&self) -> Option<String> {
        last_fatal_in(self.log_file.parent()?)
    }

    /// The line of the newest log saying this standby's history diverged from its primary's
    /// (its WAL goes past where the primary's timeline forked off): it cannot follow by
    /// streaming and must be rewound or cloned again.
    pub fn divergence(&self) -> Option<String> {
        divergence_in(self.log_file.parent()?)
    }

    /// The settings a standby may not run below, as recorded in `pg_control` (from the
    /// primary): `max_connections`, `max_worker_processes`, `max_wal_senders`,
    /// `max_prepared_transactions`, `max_locks_per_transaction`. Read from `global/pg_control`
    /// itself (server-only builds have no `pg_controldata`); `pg_controldata` only for a
    /// control file version pgherd does not know.
    pub fn controldata_minimums(&self) -> Result<Vec<(&'static str, u64)>, InstanceError> {
        let path = self.pgdata.join("global/pg_control");
        let bytes = std::fs::read(&path).map_err(|e| InstanceError::io("cannot read", &path, e))?;
        if let Some(settings) = pgherd_postgres::control_file::standby_settings(&bytes) {
            return Ok(settings);
        }
        self.binaries.tool(
            "pg_controldata",
            "reading the primary's settings recorded in a standby's pg_control",
        )?;
        let mut command = self.command("pg_controldata");
        command.arg("-D").arg(&self.pgdata);
        let text = run(command, "pg_controldata")?;
        let fields = [
            ("max_connections setting:", "max_connections"),
            ("max_worker_processes setting:", "max_worker_processes"),
            ("max_wal_senders setting:", "max_wal_senders"),
            ("max_prepared_xacts setting:", "max_prepared_transactions"),
            ("max_locks_per_xact setting:", "max_locks_per_transaction"),
        ];
        Ok(fields
            .iter()
            .filter_map(|(label, name)| {
                let line = text.lines().find(|l| l.starts_with(label))?;
                let value = line[label.len()..].trim().parse().ok()?;
                Some((*name, value))
            })
            .collect())
    }

    /// Stop the postmaster and wait for it to exit.
    pub fn stop(&self, mode: ShutdownMode, timeout: Duration) -> Result<(), InstanceError> {
        let mut command = self.command("pg_ctl");
        command
            .arg("stop")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-m")
            .arg(mode.as_arg())
            .arg("-w")
            .arg("-t")
            .arg(timeout.as_secs().max(1).to_string());
        run(command, "pg_ctl stop").map(|_| ())
    }

    /// Start the server privately: no TCP listener (only `socket_dir`, the manager's), with
    /// `options` added, waiting until it accepts connections (crash recovery included).
    pub fn start_private(&self, options: &str, purpose: &str) -> Result<(), InstanceError> {
        self.clear_stale_pid_file();
        self.user.own_dir(&self.socket_dir, 0o700)?;
        let mut start = self.command("pg_ctl");
        start
            .args(["start", "-w", "-t", "300", "-D"])
            .arg(&self.pgdata)
            .arg("-l")
            .arg(&self.log_file)
            .arg("-o")
            .arg(format!(
                "-c listen_addresses='' {options} -p {} -k {}",
                self.port,
                self.socket_dir.display()
            ));
        run(start, purpose).map(|_| ())
    }

    /// Reload the configuration (`pg_ctl reload`).
    pub fn reload(&self) -> Result<(), InstanceError> {
        let mut command = self.command("pg_ctl");
        command.arg("reload").arg("-D").arg(&self.pgdata);
        run(command, "pg_ctl reload").map(|_| ())
    }

    /// Promote a standby (`pg_ctl promote`, waiting for it to finish).
    pub fn promote(&self, timeout: Duration) -> Result<(), InstanceError> {
        let mut command = self.command("pg_ctl");
        command
            .arg("promote")
            .arg("-D")
            .arg(&self.pgdata)
            .arg("-w")
            .arg("-t")
            .arg(timeout.as_secs().max(1).to_string());
        run(command, "pg_ctl promote").map(|_| ())
    }

    /// Fence at once: SIGKILL the postmaster and every process it started (frozen or not). Committed transactions are safe (crash recovery replays them at the next start);
    /// nothing more can commit.
    pub fn kill_all(&self) {
        if let Some(pid) = self.running_postmaster() {
            crate::process::kill_tree(pid);
        }
    }

    /// Stop: fast shutdown (clients disconnected, shutdown checkpoint sent to the standbys),
    /// and when that does not finish within `timeout`, [`Postgres::kill_all`].
    pub fn stop_or_kill(&self, timeout: Duration) {
        if self.stop(ShutdownMode::Fast, timeout).is_err() {
            self.kill_all();
        }
    }

    /// The state and latest checkpoint recorded in `global/pg_control`.
    pub fn control_file(&self) -> Option<pgherd_postgres::control_file::ControlFile> {
        let bytes = std::fs::read(self.pgdata.join("global/pg_control")).ok()?;
        pgherd_postgres::control_file::parse(&bytes)
    }

    /// Remove `postmaster.pid` when the process it names is not this data's postmaster any
    /// more (exited, a zombie, or its PID now another process's): PostgreSQL would refuse to
    /// start believing it runs.
    pub fn clear_stale_pid_file(&self) {
        if self.postmaster_pid().is_some() && self.running_postmaster().is_none() {
            let _ = std::fs::remove_file(self.pgdata.join("postmaster.pid"));
        }
    }

    /// The postmaster `postmaster.pid` names, when it runs on this data: alive, and working in
    /// this PGDATA (a postmaster's working directory is its data directory). A stale file's
    /// PID taken by another process since (after a pod's or the machine's restart, a PID
    /// namespace of its own) is not adopted, stopped or killed.
    pub fn running_postmaster(&self) -> Option<u32> {
        use std::os::unix::fs::MetadataExt as _;
        let pid = self.postmaster_pid()?;
        if !crate::process::is_alive(pid) {
            return None;
        }
        let cwd = std::fs::metadata(format!("/proc/{pid}/cwd")).ok()?;
        let data = std::fs::metadata(&self.pgdata).ok()?;
        (cwd.dev() == data.dev() && cwd.ino() == data.ino()).then_some(pid)
    }

    /// Whether the filesystem holding PGDATA, or the one holding its WAL (`pg_wal` links to its
    /// own volume with `walStorage`), has less than [`DISK_RESERVE`] left: PostgreSQL there
    /// cannot be relied on to write (a new WAL segment alone needs 16 MB).
    pub fn disk_nearly_full(&self) -> bool {
        [self.pgdata.clone(), self.pgdata.join("pg_wal")]
            .iter()
            .any(|dir| {
                nix::sys::statvfs::statvfs(dir).is_ok_and(|v| {
                    v.blocks_available().saturating_mul(v.fragment_size()) < DISK_RESERVE
                })
            })
    }

    /// Whether PGDATA is set up to start as a standby.
    pub fn has_standby_signal(&self) -> bool {
        self.pgdata.join("standby.signal").is_file()
    }

    /// Remove `standby.signal` of a stopped standby, so it rejoins as a former primary does.
    pub fn remove_standby_signal(&self) -> Result<(), InstanceError> {
        let path = self.pgdata.join("standby.signal");
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(InstanceError::io("cannot remove", path, e)),
        }
    }

    /// The postmaster's PID from `postmaster.pid`, if the file exists.
    pub fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.pgdata.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initdb_arguments() {
        let spec = BootstrapInitDb {
            encoding: Some("UTF8".into()),
            locale_collate: Some("C".into()),
            data_checksums: Some(true),
            wal_segment_size: Some(32),
            ..Default::default()
        };
        let args = InitDbOptions::from_spec(&spec).args().unwrap();
        assert_eq!(
            args,
            [
                "--encoding=UTF8",
                "--lc-collate=C",
                "--data-checksums",
                "--wal-segsize=32"
            ]
        );
        let bad = BootstrapInitDb {
            wal_segment_size: Some(24),
            ..Default::default()
        };
        assert!(InitDbOptions::from_spec(&bad).args().is_err());
        let raw = BootstrapInitDb {
            options: Some(vec!["-k".into()]),
            encoding: Some("LATIN1".into()),
            ..Default::default()
        };
        assert_eq!(InitDbOptions::from_spec(&raw).args().unwrap(), ["-k"]);
    }
}
