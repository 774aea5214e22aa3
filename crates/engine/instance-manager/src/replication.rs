//! Streaming replication: cloning a replica from its primary with `pg_basebackup` over TLS
//! as `streaming_replica` (client-certificate authentication), the standby configuration that
//! keeps it streaming, and what the primary needs for it (the role and a physical slot).

use crate::sql::{execute, identifier, literal};
use crate::{InstanceError, Postgres};
use pgherd_postgres::conf::{conninfo, STREAMING_REPLICA_USER};
use std::path::PathBuf;
use tokio_postgres::Client;

/// Where a replica streams from, and with which credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimarySource {
    pub host: String,
    pub port: u16,
    /// The replica's name, as the primary sees it (`application_name`).
    pub application_name: String,
    /// The physical slot on the primary.
    pub slot: Option<String>,
    /// CA that signed the primary's server certificate.
    pub ca_file: PathBuf,
    /// `streaming_replica` client certificate and key.
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The primary's unix socket directory, when it is on this machine.
    pub socket_dir: Option<PathBuf>,
}

impl PrimarySource {
    /// The libpq connection string (no password: the certificate authenticates).
    pub fn conninfo(&self) -> String {
        let port = self.port.to_string();
        let paths = [
            self.ca_file.display().to_string(),
            self.cert_file.display().to_string(),
            self.key_file.display().to_string(),
        ];
        conninfo(&[
            ("host", &self.host),
            ("port", &port),
            ("user", STREAMING_REPLICA_USER),
            ("dbname", "postgres"),
            ("application_name", &self.application_name),
            ("sslmode", "verify-ca"),
            ("sslrootcert", &paths[0]),
            ("sslcert", &paths[1]),
            ("sslkey", &paths[2]),
            ("connect_timeout", "5"),
        ])
    }

    /// A connection to the primary as `streaming_replica` over TLS (its certificate, the
    /// cluster CA; libpq's `verify-ca`), with the same time limit as the connection string's.
    pub async fn connect(&self) -> Result<tokio_postgres::Client, InstanceError> {
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(crate::tls::client_config(
            &self.ca_file,
            &self.cert_file,
            &self.key_file,
        )?);
        let mut config = tokio_postgres::Config::new();
        config
            .host(&self.host)
            .port(self.port)
            .user(STREAMING_REPLICA_USER)
            .dbname("postgres")
            .application_name(&self.application_name)
            .ssl_mode(tokio_postgres::config::SslMode::Require)
            .connect_timeout(std::time::Duration::from_secs(5));
        let (client, connection) = config.connect(tls).await.map_err(|e| {
            InstanceError::Tls(format!(
                "could not connect to the primary at {}:{}: {e}",
                self.host, self.port
            ))
        })?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// The connection string through the primary's unix socket, as the PostgreSQL user (peer
    /// authentication), when the primary is on this machine.
    pub fn local_conninfo(&self) -> Option<String> {
        let dir = self.socket_dir.as_ref()?.display().to_string();
        let port = self.port.to_string();
        Some(conninfo(&[
            ("host", &dir),
            ("port", &port),
            ("user", "postgres"),
            ("dbname", "postgres"),
            ("application_name", &self.application_name),
            ("connect_timeout", "5"),
        ]))
    }
}

/// What libpq says when a tool was built without TLS support.
const NO_TLS_IN_TOOL: &str = "SSL support is not compiled in";

impl Postgres {
    /// Fill an empty PGDATA with a copy of the primary (`pg_basebackup`, WAL streamed alongside).
    pub fn clone_from(&self, source: &PrimarySource) -> Result<(), InstanceError> {
        let basebackup = |conninfo: String| {
            self.base_backup_into(
                &self.pgdata,
                &conninfo,
                "cloning a replica from the primary",
            )
        };
        match basebackup(source.conninfo()) {
            // The only pg_basebackup of a new enough major was built without TLS (a server-only
            // major borrows PyPI's complete build): on one machine, copy through the primary's
            // socket instead; streaming afterwards is TLS as always (the server's own libpq).
            Err(e) if e.to_string().contains(NO_TLS_IN_TOOL) => match source.local_conninfo() {
                Some(local) => basebackup(local),
                None => Err(e),
            },
            other => other,
        }
    }

    /// `pg_basebackup` of the server `conninfo` reaches into the new directory `target` (made
    /// here, mode 0700), WAL streamed alongside so the copy is consistent on its own.
    pub fn base_backup_into(
        &self,
        target: &std::path::Path,
        conninfo: &str,
        purpose: &'static str,
    ) -> Result<(), InstanceError> {
        self.binaries.tool("pg_basebackup", purpose)?;
        self.user.own_dir(target, 0o700)?;
        let mut command = self.command("pg_basebackup");
        command
            .arg("--pgdata")
            .arg(target)
            .arg("--dbname")
            .arg(conninfo)
            .arg("--wal-method=stream")
            .arg("--checkpoint=fast")
            .arg("--no-password");
        crate::postgres::run(command, "pg_basebackup").map(|_| ())
    }

    /// Make this instance a standby of `source`: `override.conf` with the connection and slot,
    /// and `standby.signal`.
    pub fn write_standby_config(&self, source: &PrimarySource) -> Result<(), InstanceError> {
        let mut text = String::from("# Written by pgherd: replication settings.\n");
        text.push_str(&format!(
            "primary_conninfo = {}\n",
            pgherd_postgres::conf::conf_value(&source.conninfo())
        ));
        if let Some(slot) = &source.slot {
            text.push_str(&format!(
                "primary_slot_name = {}\n",
                pgherd_postgres::conf::conf_value(slot)
            ));
        }
        text.push_str("recovery_target_timeline = 'latest'\n");
        self.write_file("override.conf", &text)?;
        self.write_file("standby.signal", "")
    }
}

impl Postgres {
    /// Make this instance a standby of a replica cluster's source: `override.conf` with the
    /// source's connection (when it streams; its own name as `application_name`) and
    /// `standby.signal`. WAL from the source's object store comes through `restore_command`.
    pub fn write_upstream_config(
        &self,
        name: &str,
        upstream: &pgherd_instance_protocol::Upstream,
    ) -> Result<(), InstanceError> {
        let mut text = format!(
            "# Written by pgherd: following external cluster {:?}.\n",
            upstream.source
        );
        if let Some(source) = &upstream.conninfo {
            let full = format!("{source} {}", conninfo(&[("application_name", name)]));
            text.push_str(&format!(
                "primary_conninfo = {}\n",
                pgherd_postgres::conf::conf_value(&full)
            ));
        }
        text.push_str("recovery_target_timeline = 'latest'\n");
        self.write_file("override.conf", &text)?;
        self.write_file("standby.signal", "")
    }
}

/// On a primary: whether its control file names the timeline it writes on. A promotion updates
/// the control file only at its first checkpoint; until then `pg_rewind` reads the old timeline
/// there, finds "no rewind required", and a former primary whose WAL goes past the fork could
/// never follow the new one.
pub const CHECKPOINTED_ON_CURRENT_TIMELINE: &str = "SELECT \
    (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()) = \
    ('x' || pg_catalog.substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn()), 1, 8))::bit(32)::integer";

/// On the primary: a checkpoint if its control file does not name its timeline yet (just
/// promoted, or the checkpoint after a promotion was interrupted).
pub async fn ensure_checkpoint_on_current_timeline(client: &Client) -> Result<(), InstanceError> {
    if in_place(
        client,
        "check the checkpoint timeline",
        CHECKPOINTED_ON_CURRENT_TIMELINE,
    )
    .await?
    {
        return Ok(());
    }
    execute(client, "checkpoint after promotion", "CHECKPOINT").await
}

impl Postgres {
    /// Whether `source` (the new primary) can be rewound from: its control file names its
    /// current timeline (see [`CHECKPOINTED_ON_CURRENT_TIMELINE`]). Asked over TLS with the
    /// replication certificate, as `pg_rewind` will connect.
    pub async fn can_rewind_from(&self, source: &PrimarySource) -> Result<bool, InstanceError> {
        self.binaries
            .tool("pg_rewind", "rejoining a former primary as a replica")?;
        let client = source.connect().await?;
        in_place(
            &client,
            "check the new primary's checkpoint timeline",
            CHECKPOINTED_ON_CURRENT_TIMELINE,
        )
        .await
    }

    /// Bring a former primary back in line with the new one: `pg_rewind` from `source` (it
    /// runs crash recovery first when the server was not shut down cleanly). The configuration
    /// files come back as the source's: the caller writes this instance's again. Only once
    /// [`Self::can_rewind_from`] says so.
    pub fn rewind_from(&self, source: &PrimarySource) -> Result<(), InstanceError> {
        let mut command = self.command("pg_rewind");
        command
            .arg("--target-pgdata")
            .arg(&self.pgdata)
            .arg("--source-server")
            .arg(source.conninfo());
        crate::postgres::run(command, "pg_rewind").map(|_| ())
    }
}

/// On the primary: the `streaming_replica` role, able to replicate and to run what `pg_rewind`
/// needs, authenticated by certificate only (no password).
pub async fn ensure_replication_role(client: &Client) -> Result<(), InstanceError> {
    let role = identifier(STREAMING_REPLICA_USER)?;
    let name = literal(STREAMING_REPLICA_USER)?;
    // Check first: writing every pass would wait on synchronous standbys for nothing.
    if in_place(
        client,
        "check streaming_replica",
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {name}                    AND rolcanlogin AND rolreplication)                  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_authid WHERE rolname = {name}                    AND rolpassword IS NOT NULL)                  AND pg_catalog.has_function_privilege({name},                    'pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)', 'EXECUTE')"
        ),
    )
    .await?
    {
        return Ok(());
    }
    execute(
        client,
        "create streaming_replica",
        &format!(
            "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {name}) THEN \
               CREATE ROLE {role} WITH LOGIN REPLICATION; END IF; END $$; \
             ALTER ROLE {role} WITH LOGIN REPLICATION PASSWORD NULL; \
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_ls_dir(text, boolean, boolean) TO {role}; \
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_stat_file(text, boolean) TO {role}; \
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text) TO {role}; \
             GRANT EXECUTE ON FUNCTION pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean) TO {role};"
        ),
    )
    .await
}

/// On the primary: a physical replication slot named `slot`, if missing.
pub async fn ensure_slot(client: &Client, slot: &str) -> Result<(), InstanceError> {
    let name = literal(slot)?;
    execute(
        client,
        "create replication slot",
        &format!(
            "SELECT pg_catalog.pg_create_physical_replication_slot({name}) \
             WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = {name})"
        ),
    )
    .await
}

/// On the primary: drop the slot of a removed replica.
pub async fn drop_slot(client: &Client, slot: &str) -> Result<(), InstanceError> {
    let name = literal(slot)?;
    execute(
        client,
        "drop replication slot",
        &format!(
            "SELECT pg_catalog.pg_drop_replication_slot(slot_name) FROM pg_catalog.pg_replication_slots \
             WHERE slot_name = {name} AND NOT active"
        ),
    )
    .await
}

/// The metrics exporter's role (login, `pg_monitor`, pinned `search_path`), created once.
pub async fn ensure_exporter_role(client: &Client) -> Result<(), InstanceError> {
    let name = literal(pgherd_metrics::EXPORTER_ROLE)?;
    if in_place(
        client,
        "check the metrics exporter role",
        &format!(
            "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = {name} AND rolcanlogin) \
             AND pg_catalog.pg_has_role({name}, 'pg_monitor', 'MEMBER')"
        ),
    )
    .await?
    {
        return Ok(());
    }
    execute(
        client,
        "create the metrics exporter role",
        pgherd_metrics::EXPORTER_ROLE_SQL,
    )
    .await
}

/// Whether `check` (one boolean) says something is already as wanted.
async fn in_place(
    client: &Client,
    context: &'static str,
    check: &str,
) -> Result<bool, InstanceError> {
    Ok(crate::sql::timed(context, client.query_one(check, &[]))
        .await?
        .get(0))
}
