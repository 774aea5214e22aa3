//! CloudNativePG's cluster phase strings, exactly.

pub const SETTING_UP_PRIMARY: &str = "Setting up primary";
pub const CREATING_REPLICA: &str = "Creating a new replica";
pub const HEALTHY: &str = "Cluster in healthy state";
pub const WAITING_FOR_INSTANCES: &str = "Waiting for the instances to become active";
pub const UPGRADING: &str = "Upgrading cluster";
pub const MAJOR_UPGRADE: &str = "Upgrading Postgres major version";
pub const SWITCHOVER: &str = "Switchover in progress";
pub const FAILING_OVER: &str = "Failing over";
pub const APPLYING_CONFIGURATION: &str = "Applying configuration";
pub const PRIMARY_RESTARTING_IN_PLACE: &str = "Primary instance is being restarted in-place";
pub const INVALID_DEFINITION: &str = "Invalid cluster definition";
pub const CANNOT_CREATE_OBJECTS: &str = "Unable to create required cluster objects";
/// pgherd's: CloudNativePG leaves the last phase in place while hibernated (its reconciliation
/// stops); pgherd says it.
pub const HIBERNATION: &str = "Cluster in hibernation";
