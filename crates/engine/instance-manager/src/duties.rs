//! What an instance that leads its cluster does besides running PostgreSQL: on a primary, the
//! replication and exporter roles, the replicas' slots, the declared roles, tablespaces and
//! databases, the pooler's authentication; on a replica cluster's designated primary, the
//! slots alone; and the archiver's statistics for the report.

use crate::replication::{drop_slot, ensure_replication_role, ensure_slot};
use crate::{InstanceError, Postgres};
use pgherd_instance_protocol::{InstanceSpec, InstanceStatus};

/// `pg_stat_archiver`, when it can be read.
pub(crate) async fn archiver_stat(
    client: &tokio_postgres::Client,
) -> Option<crate::wal::ArchiverStat> {
    let row = crate::sql::timed(
        "pg_stat_archiver",
        client.query_one(
            "SELECT last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time), \
             failed_count, last_failed_wal, \
             to_char(last_failed_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') \
             FROM pg_catalog.pg_stat_archiver",
            &[],
        ),
    )
    .await
    .ok()?;
    Some(crate::wal::ArchiverStat {
        failing: row.get(0),
        failed_count: row.get(1),
        last_failed_wal: row.get(2),
        last_failed_time: row.get(3),
    })
}

/// On the primary: the replication role and slots, managed roles and databases, the
/// pooler's authentication role.
pub(crate) async fn primary_duties(
    spec: &InstanceSpec,
    pg: &Postgres,
    client: &tokio_postgres::Client,
    status: &mut InstanceStatus,
) -> Result<(), InstanceError> {
    // Former primaries rewind from this one only once its control file names its new
    // timeline; checked every pass, so an interrupted checkpoint is made up for.
    crate::replication::ensure_checkpoint_on_current_timeline(client).await?;
    ensure_replication_role(client).await?;
    crate::replication::ensure_exporter_role(client).await?;
    sync_slots(spec, client).await?;
    if !spec.roles.is_empty() || !spec.databases.is_empty() || !spec.tablespaces.is_empty() {
        let results = crate::declarative::reconcile(pg, spec).await?;
        status.role_results = results.roles;
        status.tablespace_results = results.tablespaces;
        status.database_results = results.databases;
    }
    crate::pooler::reconcile(pg, client, spec.pooler_auth).await?;
    Ok(())
}

/// The physical slots the other instances stream through (on a primary, or on a replica
/// cluster's designated primary, which its replicas follow): made when missing, and the
/// operator's slots of instances that are gone dropped.
pub(crate) async fn sync_slots(
    spec: &InstanceSpec,
    client: &tokio_postgres::Client,
) -> Result<(), InstanceError> {
    for slot in &spec.replica_slots {
        ensure_slot(client, slot).await?;
    }
    let rows = client
        .query(
            "SELECT slot_name FROM pg_catalog.pg_replication_slots WHERE slot_type = 'physical'",
            &[],
        )
        .await
        .map_err(|e| InstanceError::Sql {
            context: "list slots",
            message: e.to_string(),
        })?;
    for row in rows {
        let name: String = row.get(0);
        if name.starts_with(&spec.slot_prefix) && !spec.replica_slots.contains(&name) {
            drop_slot(client, &name).await?;
        }
    }
    Ok(())
}
