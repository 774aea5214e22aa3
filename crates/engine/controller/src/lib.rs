//! The cluster controller: from a validated Cluster to what must exist for it — its
//! certificates and secrets first; the plan of instances, endpoints and status follows. Also
//! what users see and ask of a cluster on every platform: the decisions behind their verbs
//! (`operations`) and the status view and its text rendering (`status_view`, `status_render`).
//!
//! Pure apart from randomness for keys and passwords: no file, network or process I/O, no
//! platform, no async runtime (the pass in `reconcile` is generic over the platform's traits).
//! Depends only on the model crates.
//!
//! Imports: pgherd-api, pgherd-instance-protocol, pgherd-postgres.

pub mod cluster_status;
pub mod declarative;
pub mod external;
pub mod ha;
pub mod hibernation;
pub mod instance_spec;
pub mod key_refs;
pub mod major_upgrade;
pub mod operations;
pub mod phase;
pub mod pki;
pub mod plan;
pub mod reconcile;
pub mod recovery;
pub mod rollout;
pub mod status_render;
pub mod status_view;
pub mod synchronous;
