//! What the instance manager reads from its PostgreSQL to report [`InstanceStatus`]: role,
//! WAL positions, timeline, system identifier, WAL receiver, pending restart, streaming
//! replicas and replication slots. Connects over the Unix socket as `postgres`; every network
//! call has a timeout.

use crate::sql::timed;
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{InstanceStatus, ReplicationInfo, ReplicationSlotInfo, Role};
use pgherd_postgres::Lsn;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// How long one connection attempt or status query may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connect to `database` as the `postgres` superuser over the Unix socket.
pub async fn connect(pg: &Postgres, database: &str) -> Result<Client, InstanceError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(&pg.socket_dir)
        .port(pg.port)
        .user("postgres")
        .dbname(database)
        .application_name("pgherd-instance-manager")
        .connect_timeout(QUERY_TIMEOUT);
    let (client, connection) = timed("connect", config.connect(NoTls)).await?;
    tokio::spawn(async move {
        // The connection ends when the client is dropped; its error, if any, shows up on the
        // next query, so nothing is lost by ignoring it here.
        let _ = connection.await;
    });
    Ok(client)
}

fn lsn(text: Option<String>) -> Option<Lsn> {
    text.and_then(|t| t.parse().ok())
}

/// Read the instance's status.
pub async fn observe(
    client: &Client,
    pod: &str,
    pid: Option<u32>,
) -> Result<InstanceStatus, InstanceError> {
    let row = timed(
        "status",
        client.query_one(
            "SELECT pg_catalog.pg_is_in_recovery(), \
                    (SELECT system_identifier::text FROM pg_catalog.pg_control_system()), \
                    EXISTS (SELECT 1 FROM pg_catalog.pg_settings s WHERE s.pending_restart \
                      AND NOT (s.name = 'archive_mode' AND s.setting = 'always' \
                        AND (SELECT f.setting FROM pg_catalog.pg_file_settings f \
                             WHERE f.name = 'archive_mode' \
                             ORDER BY f.seqno DESC LIMIT 1) = 'on'))",
            &[],
        ),
    )
    .await?;
    let in_recovery: bool = row.get(0);
    let system_id: Option<String> = row.get(1);
    // A promoted replica cluster's instances still run `archive_mode = always`: on the
    // primary it archives exactly as `on` does, and a standby uploads the same segments its
    // primary does (idempotent, as in a replica cluster). No rolling restart (a write outage
    // right after the promotion) for that alone; they take `on` at their next restart.
    let pending_restart: bool = row.get(2);
    let mut status = InstanceStatus {
        is_primary: !in_recovery,
        ready: true,
        system_id,
        pending_restart,
        postmaster_pid: pid,
        ..blank_status(
            pod,
            if in_recovery {
                Role::Replica
            } else {
                Role::Primary
            },
        )
    };
    if in_recovery {
        let row = timed(
            "replica status",
            client.query_one(
                "SELECT pg_catalog.pg_last_wal_receive_lsn()::text, pg_catalog.pg_last_wal_replay_lsn()::text, \
                        pg_catalog.pg_is_wal_replay_paused(), \
                        (SELECT status = 'streaming' FROM pg_catalog.pg_stat_wal_receiver), \
                        COALESCE((SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver), \
                                 (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()))",
                &[],
            ),
        )
        .await?;
        status.received_lsn = lsn(row.get(0));
        status.replay_lsn = lsn(row.get(1));
        status.current_lsn = status.replay_lsn;
        status.replay_paused = row.get(2);
        status.is_wal_receiver_active = row.get::<_, Option<bool>>(3).unwrap_or(false);
        status.timeline_id = row
            .get::<_, Option<i32>>(4)
            .and_then(|t| u32::try_from(t).ok());
    } else {
        let row = timed(
            "primary status",
            client.query_one(
                "SELECT pg_catalog.pg_current_wal_lsn()::text, pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())",
                &[],
            ),
        )
        .await?;
        status.current_lsn = lsn(row.get(0));
        let walfile: String = row.get(1);
        status.timeline_id = walfile
            .get(..8)
            .and_then(|t| u32::from_str_radix(t, 16).ok());
        let rows = timed(
            "replication",
            client.query(
                "SELECT application_name, COALESCE(state, ''), COALESCE(sync_state, ''), sent_lsn::text, \
                        write_lsn::text, flush_lsn::text, replay_lsn::text, \
                        COALESCE(write_lag, '0'::interval)::text, COALESCE(flush_lag, '0'::interval)::text, \
                        COALESCE(replay_lag, '0'::interval)::text, COALESCE(sync_priority, 0) \
                 FROM pg_catalog.pg_stat_replication ORDER BY application_name",
                &[],
            ),
        )
        .await?;
        status.replication_info = rows
            .iter()
            .map(|r| ReplicationInfo {
                application_name: r.get(0),
                state: r.get(1),
                sync_state: r.get(2),
                sent_lsn: lsn(r.get(3)),
                write_lsn: lsn(r.get(4)),
                flush_lsn: lsn(r.get(5)),
                replay_lsn: lsn(r.get(6)),
                write_lag: r.get(7),
                flush_lag: r.get(8),
                replay_lag: r.get(9),
                sync_priority: r.get(10),
            })
            .collect();
        let slots = timed(
            "replication slots",
            client.query(
                "SELECT slot_name::text, COALESCE(slot_type, ''), active, plugin::text, database::text, \
                        datoid::text, xmin::text, catalog_xmin::text, restart_lsn::text, wal_status, \
                        safe_wal_size \
                 FROM pg_catalog.pg_replication_slots ORDER BY slot_name",
                &[],
            ),
        )
        .await?;
        status.replication_slots = slots
            .iter()
            .map(|r| ReplicationSlotInfo {
                slot_name: r.get(0),
                slot_type: r.get(1),
                active: r.get(2),
                plugin: r.get(3),
                database: r.get(4),
                datoid: r.get(5),
                xmin: r.get(6),
                catalog_xmin: r.get(7),
                restart_lsn: lsn(r.get(8)),
                wal_status: r.get(9),
                safe_wal_size: r.get(10),
            })
            .collect();
    }
    Ok(status)
}

/// A report of `pod` in `role` with nothing observed yet, from this instance manager.
pub(crate) fn blank_status(pod: &str, role: Role) -> InstanceStatus {
    InstanceStatus::nothing_observed(pod, role, env!("CARGO_PKG_VERSION"))
}
