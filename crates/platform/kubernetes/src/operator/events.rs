//! Events on Clusters and Poolers for what a user must be able to see afterwards in `kubectl
//! describe` and `kubectl get events`: failovers, switchovers, finished backups, major upgrades
//! and settings that could not be carried out (events.k8s.io,
//! which `kubectl describe` shows with the core ones; the release's RBAC grants both).
//! Publishing is best effort: an event that cannot be written never fails a pass.

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

/// The reporting controller's name (CloudNativePG's).
const CONTROLLER: &str = "cloudnative-pg";

/// What happened to a Cluster or a Pooler.
#[derive(Debug, Clone)]
pub(crate) enum OperatorEvent {
    /// The primary failed and `promoted` took over.
    FailedOver { promoted: String },
    /// A requested switchover made `promoted` the primary.
    SwitchedOver { promoted: String },
    /// Backup `name` finished.
    BackupFinished { name: String, completed: bool },
    /// A setting could not be carried out (`note` says which and why).
    NotCarriedOut { note: String },
    /// An in-place major upgrade started (its Job created) or completed.
    MajorUpgrade { note: String, completed: bool },
}

impl OperatorEvent {
    fn event(&self) -> Event {
        let (type_, reason, note, action) = match self {
            OperatorEvent::FailedOver { promoted } => (
                EventType::Warning,
                "FailoverCompleted",
                format!("The primary failed: {promoted} was promoted"),
                "Failover",
            ),
            OperatorEvent::SwitchedOver { promoted } => (
                EventType::Normal,
                "SwitchoverCompleted",
                format!("{promoted} is the new primary"),
                "Switchover",
            ),
            OperatorEvent::BackupFinished {
                name,
                completed: true,
            } => (
                EventType::Normal,
                "BackupCompleted",
                format!("Backup {name} completed"),
                "Backup",
            ),
            OperatorEvent::BackupFinished {
                name,
                completed: false,
            } => (
                EventType::Warning,
                "BackupFailed",
                format!("Backup {name} failed: see its status.error"),
                "Backup",
            ),
            // One reason per step: events of one reason and action are counted as a series
            // under the first one's note.
            OperatorEvent::MajorUpgrade { note, completed } => (
                EventType::Normal,
                if *completed {
                    "MajorUpgradeCompleted"
                } else {
                    "MajorUpgradeStarted"
                },
                note.clone(),
                "Upgrade",
            ),
            OperatorEvent::NotCarriedOut { note } => (
                EventType::Warning,
                "NotCarriedOut",
                note.clone(),
                "Reconcile",
            ),
        };
        Event {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        }
    }
}

/// Publishes events.
#[derive(Clone)]
pub(crate) struct Events {
    recorder: Recorder,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Events")
    }
}

impl Events {
    pub(crate) fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: CONTROLLER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Events {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publish `what` on `object` (logged, not returned, when it cannot be written).
    pub(crate) async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        what: OperatorEvent,
    ) {
        let reference = object.object_ref(&());
        if let Err(e) = self.recorder.publish(&what.event(), &reference).await {
            tracing::warn!("cannot publish an event: {e}");
        }
    }
}
