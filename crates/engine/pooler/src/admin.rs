//! PgBouncer's admin console (the `pgbouncer` database): `PAUSE`, `RESUME`, `RELOAD`,
//! `RECONNECT` and the `SHOW` commands, over the unix socket with the simple query protocol
//! (the console speaks nothing else). Every call has a timeout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio_postgres::{NoTls, SimpleQueryMessage};

/// What went wrong talking to the console; never carries the password.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot reach the PgBouncer admin console at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("PgBouncer {command} failed: {message}")]
    Command { command: String, message: String },
    #[error("PgBouncer {command} did not answer within {seconds}s")]
    Timeout { command: String, seconds: u64 },
}

impl AdminError {
    /// A stable category (metrics labels, events).
    pub fn category(&self) -> &'static str {
        match self {
            AdminError::Connect { .. } => "connect",
            AdminError::Command { .. } => "command",
            AdminError::Timeout { .. } => "timeout",
        }
    }
}

/// One row of a `SHOW` command: column → text value.
pub type Row = BTreeMap<String, String>;

/// Where a PgBouncer's console is and how to log in.
#[derive(Clone)]
pub struct AdminTarget {
    pub socket_dir: PathBuf,
    pub port: u16,
    pub password: String,
}

impl std::fmt::Debug for AdminTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTarget")
            .field("socket_dir", &self.socket_dir)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

/// A connected admin console.
#[derive(Debug)]
pub struct AdminClient {
    client: tokio_postgres::Client,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl AdminClient {
    /// Log in to the console of the PgBouncer listening in `target.socket_dir`.
    pub async fn connect(target: &AdminTarget) -> Result<Self, AdminError> {
        Self::connect_to(&target.socket_dir, target.port, &target.password).await
    }

    async fn connect_to(socket_dir: &Path, port: u16, password: &str) -> Result<Self, AdminError> {
        let mut config = tokio_postgres::Config::new();
        config
            .host_path(socket_dir)
            .port(port)
            .user(crate::ADMIN_USER)
            .password(password)
            .dbname("pgbouncer")
            .connect_timeout(CONNECT_TIMEOUT);
        let socket = format!("{}/.s.PGSQL.{port}", socket_dir.display());
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| AdminError::Connect {
                socket: socket.clone(),
                message: "timed out".into(),
            })?;
        let (client, connection) = connected.map_err(|e| AdminError::Connect {
            socket,
            message: e.to_string(),
        })?;
        tokio::spawn(async move {
            // Ends when the client is dropped; errors show on the next command.
            let _ = connection.await;
        });
        Ok(AdminClient { client })
    }

    /// Run one console command, waiting at most `timeout`; the rows it returned.
    pub async fn command(&self, command: &str, timeout: Duration) -> Result<Vec<Row>, AdminError> {
        let messages = tokio::time::timeout(timeout, self.client.simple_query(command))
            .await
            .map_err(|_| AdminError::Timeout {
                command: command.to_string(),
                seconds: timeout.as_secs(),
            })?
            .map_err(|e| AdminError::Command {
                command: command.to_string(),
                message: e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_string()),
            })?;
        let mut rows = Vec::new();
        for m in messages {
            if let SimpleQueryMessage::Row(row) = m {
                let mut out = Row::new();
                for (i, column) in row.columns().iter().enumerate() {
                    out.insert(
                        column.name().to_string(),
                        row.get(i).unwrap_or_default().to_string(),
                    );
                }
                rows.push(out);
            }
        }
        Ok(rows)
    }

    /// `PAUSE`: returns once every server connection is released (transactions finished).
    pub async fn pause(&self, timeout: Duration) -> Result<(), AdminError> {
        match self.command("PAUSE", timeout).await {
            // A PAUSE given earlier is still in effect (or pending): paused is what was asked.
            Err(AdminError::Command { message, .. })
                if message.contains("already suspended/paused") =>
            {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    /// `RESUME` after `PAUSE`; a PgBouncer that is not paused answers with an error, which
    /// is not one here.
    pub async fn resume(&self) -> Result<(), AdminError> {
        match self.command("RESUME", Duration::from_secs(5)).await {
            Err(AdminError::Command { message, .. }) if message.contains("not paused") => Ok(()),
            other => other.map(drop),
        }
    }

    /// `RELOAD`: re-read `pgbouncer.ini` and the HBA file; clients stay connected.
    pub async fn reload(&self) -> Result<(), AdminError> {
        self.command("RELOAD", Duration::from_secs(5))
            .await
            .map(drop)
    }

    /// `RECONNECT`: close every server connection once released (new ones go to wherever
    /// the endpoint now points).
    pub async fn reconnect(&self) -> Result<(), AdminError> {
        self.command("RECONNECT", Duration::from_secs(5))
            .await
            .map(drop)
    }

    /// `SHOW <what>` (`POOLS`, `STATS`, `LISTS`, `DATABASES`, ...).
    pub async fn show(&self, what: &str) -> Result<Vec<Row>, AdminError> {
        self.command(&format!("SHOW {what}"), Duration::from_secs(5))
            .await
    }
}
