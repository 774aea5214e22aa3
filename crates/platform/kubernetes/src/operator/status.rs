//! `Cluster.status` in CloudNativePG's shape (the controller's builder), written through the
//! status subresource with a merge patch when it changed.

use super::OperatorError;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use pgherd_api::cluster::{ClusterStatus, ManagedRoles};
use pgherd_api::Cluster;
use pgherd_backup::catalog_summary::CatalogSummary;
use pgherd_controller::cluster_status::{
    cluster_status, last_backup_condition, ConditionInput, StatusInput,
};
use pgherd_controller::reconcile::PassOutcome;
use std::collections::BTreeMap;

fn api(client: &Client, cluster: &Cluster) -> Api<Cluster> {
    Api::namespaced(
        client.clone(),
        cluster.metadata.namespace.as_deref().unwrap_or("default"),
    )
}

/// Merge `patch` into the Cluster through its status subresource.
async fn patch_status(
    client: &Client,
    cluster: &Cluster,
    patch: &serde_json::Value,
) -> Result<Cluster, kube::Error> {
    api(client, cluster)
        .patch_status(
            cluster.metadata.name.as_deref().unwrap_or_default(),
            &PatchParams::default(),
            &Patch::Merge(patch),
        )
        .await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What the platform's pass adds to the controller's status.
pub(crate) struct PassFacts {
    /// Each instance's pod address.
    pub addresses: BTreeMap<String, String>,
    pub conditions: Vec<ConditionInput>,
    /// From the primary's report, when it reported.
    pub managed_roles: Option<ManagedRoles>,
    /// From the primary's report, when it reported and tablespaces are declared.
    pub tablespaces: Option<Vec<pgherd_api::cluster::TablespaceState>>,
    /// Backups that finished in this pass.
    pub backups: Vec<super::backups::Finished>,
    /// What a read of the backup catalog found, when one finished.
    pub catalog: Option<CatalogSummary>,
    /// The certificates in use and when each expires.
    pub certificates: pgherd_api::cluster::CertificatesStatus,
    /// What the data was made with (`None`: no data yet).
    pub pg_data_image_info: Option<pgherd_api::cluster::ImageInfo>,
    /// Why what the Cluster asks for does not run (a refused spec held at the last valid one,
    /// an image of another major).
    pub refusal: Option<String>,
}

/// The Cluster's backup fields with the backups that finished in this pass: the last
/// successful and failed backup, and the first recoverability point (the end of the first
/// backup, until a catalog read says otherwise).
fn backup_fields(
    previous: Option<&ClusterStatus>,
    catalog: Option<&CatalogSummary>,
    finished: &[super::backups::Finished],
) -> (Option<String>, Option<String>, Option<String>) {
    let (mut ok, mut failed, mut first) = match catalog {
        Some(c) => (
            c.last_successful_backup.clone(),
            c.last_failed_backup.clone(),
            c.first_recoverability_point.clone(),
        ),
        None => (
            previous.and_then(|s| s.last_successful_backup.clone()),
            previous.and_then(|s| s.last_failed_backup.clone()),
            previous.and_then(|s| s.first_recoverability_point.clone()),
        ),
    };
    for f in finished {
        let field = if f.completed { &mut ok } else { &mut failed };
        if field.as_ref().is_none_or(|before| *before < f.stopped_at) {
            *field = Some(f.stopped_at.clone());
        }
        if f.completed && first.is_none() {
            first = Some(f.stopped_at.clone());
        }
    }
    (ok, failed, first)
}

/// Write the status of the pass.
pub(crate) async fn write(
    client: &Client,
    cluster: &Cluster,
    outcome: &PassOutcome,
    facts: PassFacts,
) -> Result<(), OperatorError> {
    let (ok, failed, first) = backup_fields(
        cluster.status.as_ref(),
        facts.catalog.as_ref(),
        &facts.backups,
    );
    let mut conditions = facts.conditions;
    conditions.extend(last_backup_condition(ok.as_deref(), failed.as_deref()));
    let mut status = cluster_status(&StatusInput {
        cluster,
        plan: &outcome.plan,
        observed: &outcome.observation,
        previous: cluster.status.as_ref(),
        now: now(),
        addresses: &facts.addresses,
        conditions,
    });
    // What the pass could not do to an instance's objects (a claim that cannot shrink, a pod
    // the API refused) is said even while PostgreSQL is healthy.
    if status.phase_reason.is_none() {
        status.phase_reason = facts.refusal.clone().or_else(|| {
            outcome
                .instance_errors
                .iter()
                .next()
                .map(|(instance, error)| format!("{instance}: {error}"))
        });
    }
    if facts.pg_data_image_info.is_some() {
        status.pg_data_image_info = facts.pg_data_image_info;
    }
    // A pass of the controller runs no major upgrade (see [`write_upgrade`]).
    status.target_pg_data_image_info = None;
    status.certificates = Some(facts.certificates);
    status.last_successful_backup = ok;
    status.last_failed_backup = failed;
    status.first_recoverability_point = first;
    if facts.managed_roles.is_some() {
        status.managed_roles_status = facts.managed_roles;
    }
    if facts.tablespaces.is_some() {
        status.tablespaces_status = facts.tablespaces;
    }
    if cluster.status.as_ref() == Some(&status) {
        return Ok(());
    }
    // Conditioned on the version read: a status written meanwhile (`kubectl cnpg promote`
    // setting targetPrimary) is never overwritten with an older one; the next pass re-reads.
    // A merge patch keeps what it does not name: a field the pass no longer sets (a cleared
    // phaseReason, a removed instance's entry) is named with null.
    let mut new_status = serde_json::to_value(&status).map_err(|e| {
        OperatorError::Invalid(format!("the Cluster's status cannot be written: {e}"))
    })?;
    if let Some(old) = cluster.status.as_ref() {
        if let Ok(old) = serde_json::to_value(old) {
            null_removed(&old, &mut new_status);
        }
    }
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": cluster.metadata.resource_version },
        "status": new_status,
    });
    match patch_status(client, cluster, &patch).await {
        Ok(_) => Ok(()),
        // Written meanwhile: the next pass starts from what is stored.
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Name with null, in `new`, every key of `old`'s objects that `new` no longer has, so that
/// a JSON merge patch of `new` over `old` gives `new` (arrays are replaced whole).
fn null_removed(old: &serde_json::Value, new: &mut serde_json::Value) {
    let (Some(old), Some(new)) = (old.as_object(), new.as_object_mut()) else {
        return;
    };
    for (key, before) in old {
        match new.get_mut(key) {
            Some(after) => null_removed(before, after),
            None => {
                new.insert(key.clone(), serde_json::Value::Null);
            }
        }
    }
}

/// The status of a pass taken by a major upgrade (CloudNativePG's): its phase and reason, the
/// image it upgrades to, no instance ready.
pub(crate) async fn write_upgrade(
    client: &Client,
    cluster: &Cluster,
    reason: &str,
    to: &pgherd_api::cluster::ImageInfo,
) -> Result<(), OperatorError> {
    let current = cluster.status.as_ref();
    let phase = pgherd_controller::phase::MAJOR_UPGRADE;
    if current.and_then(|s| s.phase.as_deref()) == Some(phase)
        && current.and_then(|s| s.phase_reason.as_deref()) == Some(reason)
        && current.and_then(|s| s.target_pg_data_image_info.as_ref()) == Some(to)
    {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": {
        "phase": phase,
        "phaseReason": reason,
        "targetPgDataImageInfo": to,
        "readyInstances": 0,
    } });
    patch_status(client, cluster, &patch).await?;
    Ok(())
}

/// Say why the Cluster cannot be reconciled (`kubectl get cluster` shows the phase and
/// `kubectl cnpg status` the reason).
pub(crate) async fn write_error(
    client: &Client,
    cluster: &Cluster,
    message: &str,
) -> Result<(), OperatorError> {
    let phase = "Cluster cannot be reconciled";
    let current = cluster.status.as_ref();
    if current.and_then(|s| s.phase.as_deref()) == Some(phase)
        && current.and_then(|s| s.phase_reason.as_deref()) == Some(message)
    {
        return Ok(());
    }
    let patch = serde_json::json!({ "status": { "phase": phase, "phaseReason": message } });
    patch_status(client, cluster, &patch).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::backups::Finished;

    #[test]
    fn removed_fields_are_named_with_null() {
        let old = serde_json::json!({"phase": "p", "phaseReason": "r", "reported": {"pg-1": 1, "pg-5": 2}, "names": ["a", "b"]});
        let mut new = serde_json::json!({"phase": "p", "reported": {"pg-1": 1}, "names": ["a"]});
        null_removed(&old, &mut new);
        assert_eq!(
            new,
            serde_json::json!({"phase": "p", "phaseReason": null, "reported": {"pg-1": 1, "pg-5": null}, "names": ["a"]})
        );
    }

    #[test]
    fn finished_backups_and_catalog_reads_become_the_backup_fields() {
        let done = |completed, at: &str| Finished {
            name: "b".into(),
            completed,
            stopped_at: at.into(),
        };
        // The first backup: its end is the first point to recover to.
        let (ok, failed, first) = backup_fields(None, None, &[done(true, "2026-12-06T08:00:00Z")]);
        assert_eq!(ok.as_deref(), Some("2026-12-06T08:00:00Z"));
        assert_eq!(first.as_deref(), Some("2026-12-06T08:00:00Z"));
        assert_eq!(failed, None);
        // A later failure is recorded beside it; the first point stays.
        let previous = ClusterStatus {
            last_successful_backup: ok,
            first_recoverability_point: first,
            ..Default::default()
        };
        let (ok, failed, first) = backup_fields(
            Some(&previous),
            None,
            &[done(false, "2026-12-06T09:00:00Z")],
        );
        assert_eq!(ok.as_deref(), Some("2026-12-06T08:00:00Z"));
        assert_eq!(failed.as_deref(), Some("2026-12-06T09:00:00Z"));
        assert_eq!(first.as_deref(), Some("2026-12-06T08:00:00Z"));
        // A catalog read (retention applied) says what the store holds now.
        let catalog = CatalogSummary {
            first_recoverability_point: Some("2026-12-06T08:30:00Z".into()),
            last_successful_backup: Some("2026-12-06T08:30:00Z".into()),
            ..Default::default()
        };
        let (_, failed, first) = backup_fields(Some(&previous), Some(&catalog), &[]);
        assert_eq!(first.as_deref(), Some("2026-12-06T08:30:00Z"));
        assert_eq!(failed, None);
    }
}
