//! The local platform: the same clusters as on Kubernetes, run as processes on one machine.
//! A state directory stands in for the API server (applied objects and their status), secret
//! files (mode 0600) for Secrets, instance-manager processes for pods, and TCP listeners on
//! loopback for the `-rw`/`-ro`/`-r` Services.
//!
//! Depends on the model and engine crates; nothing depends on it but the app.
//!
//! Imports: pgherd-api, pgherd-backup, pgherd-controller, pgherd-instance-manager, pgherd-instance-protocol, pgherd-metrics, pgherd-pooler, pgherd-postgres, pgherd-safe-fs.

pub mod apply;
pub mod backup_jobs;
pub mod backups;
pub mod catalog_image;
pub mod certificates;
pub mod control;
pub mod database_roles;
pub mod declarative;
pub mod desired;
pub mod endpoints;
pub mod error;
pub mod external;
pub mod instances;
pub mod key_refs;
mod local_pass;
pub mod logical;
mod major_upgrade;
pub mod monitoring;
pub mod netns;
pub mod observation;
pub mod placement;
pub mod plane;
pub mod plane_metrics;
pub mod pooler;
pub mod pooler_files;
pub mod schedules;
pub mod secrets;
pub mod sockets;
pub mod spec_file;
pub mod state;
pub mod status;
pub mod stores;
mod view;

pub use error::LocalError;
pub use state::StateDir;
