//! `ScheduledBackup`s on Kubernetes: every second each schedule takes one step
//! ([`pgherd_backup::schedule::step`], the same as on the local platform); the Backups it
//! creates carry CloudNativePG's labels and the owner the schedule names (with its uid), and
//! the schedule's status is written when it says something new.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use pgherd_api::kinds::backup::Backup;
use pgherd_api::kinds::scheduled_backup::ScheduledBackup;
use pgherd_api::Cluster;
use pgherd_backup::schedule::{self, SCHEDULED_BACKUP_LABEL};
use std::time::Duration;

/// How often the schedules are stepped.
const EVERY: Duration = Duration::from_secs(1);

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Step every ScheduledBackup, until stopped.
pub(crate) async fn run(client: Client) {
    loop {
        if let Err(e) = pass(&client).await {
            tracing::debug!("scheduled backups: {e}");
        }
        tokio::time::sleep(EVERY).await;
    }
}

async fn pass(client: &Client) -> Result<(), kube::Error> {
    let schedules = Api::<ScheduledBackup>::all(client.clone())
        .list(&ListParams::default())
        .await?;
    for s in schedules {
        let (Some(namespace), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone())
        else {
            continue;
        };
        if s.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let backups: Api<Backup> = Api::namespaced(client.clone(), &namespace);
        let ours = backups
            .list(&ListParams::default().labels(&format!("{SCHEDULED_BACKUP_LABEL}={name}")))
            .await?;
        let unfinished = ours.iter().any(|b| {
            !matches!(
                b.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("completed" | "failed")
            )
        });
        let before = s.status.clone().unwrap_or_default();
        let (status, due) = schedule::step(&s, before.clone(), now(), unfinished);
        for d in &due {
            let mut backup = schedule::backup(&s, &namespace, d);
            if let Err(e) = set_owner_uid(client, &s, &mut backup).await {
                tracing::warn!("{namespace}/{name}: cannot find the Backup's owner: {e}");
                continue;
            }
            match backups.create(&PostParams::default(), &backup).await {
                Ok(_) => tracing::info!("{namespace}/{name}: created Backup {}", d.name),
                // Created by an earlier step: idempotent.
                Err(kube::Error::Api(e)) if e.code == 409 => {}
                Err(e) => {
                    tracing::warn!("{namespace}/{name}: cannot create Backup {}: {e}", d.name)
                }
            }
        }
        if schedule::changed(&before, &status) {
            let api: Api<ScheduledBackup> = Api::namespaced(client.clone(), &namespace);
            let patch = serde_json::json!({ "status": status });
            api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

/// The owner reference the schedule names gets its object's uid (the API server refuses one
/// without; garbage collection follows it).
async fn set_owner_uid(
    client: &Client,
    schedule: &ScheduledBackup,
    backup: &mut Backup,
) -> Result<(), kube::Error> {
    let Some(owner) = backup
        .metadata
        .owner_references
        .as_mut()
        .and_then(|o| o.first_mut())
    else {
        return Ok(());
    };
    let uid = if owner.kind == "Cluster" {
        let namespace = schedule.metadata.namespace.as_deref().unwrap_or("default");
        Api::<Cluster>::namespaced(client.clone(), namespace)
            .get(&owner.name)
            .await?
            .metadata
            .uid
    } else {
        schedule.metadata.uid.clone()
    };
    *owner = OwnerReference {
        uid: uid.unwrap_or_default(),
        ..owner.clone()
    };
    Ok(())
}
