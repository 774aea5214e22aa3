//! What a Cluster may ask for that the Kubernetes platform does not run yet: refused, never
//! accepted and ignored — at admission by the validating webhook, and by the operator for
//! Clusters that reach it without the webhook. Pure.

use pgherd_api::Cluster;

/// One field the Kubernetes platform does not run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRun {
    /// The field's path (`spec.tablespaces`).
    pub field: &'static str,
    /// What it asks for, for the message.
    pub what: &'static str,
}

impl NotRun {
    /// Why it is refused, after the field.
    pub fn reason(&self) -> String {
        format!(
            "{} is not supported by pgherd's Kubernetes operator yet",
            self.what
        )
    }

    /// `field: reason`.
    pub fn message(&self) -> String {
        format!("{}: {}", self.field, self.reason())
    }
}

/// What of `cluster` the Kubernetes platform does not run yet.
pub fn cluster_fields(cluster: &Cluster) -> Vec<NotRun> {
    let spec = &cluster.spec;
    let bootstrap = spec.bootstrap.as_ref();
    let mut out = Vec::new();
    let mut refuse = |field: &'static str, what: &'static str| out.push(NotRun { field, what });
    if spec
        .backup
        .as_ref()
        .is_some_and(|b| b.volume_snapshot.is_some())
    {
        refuse("spec.backup.volumeSnapshot", "volume snapshot backups");
    }
    if bootstrap
        .and_then(|b| b.recovery.as_ref())
        .is_some_and(|r| r.volume_snapshots.is_some())
    {
        refuse(
            "spec.bootstrap.recovery.volumeSnapshots",
            "recovery from volume snapshots",
        );
    }
    out
}
