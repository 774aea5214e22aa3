//! Defaulting, as CloudNativePG's mutating webhook and CRD `default:` markers do it. Applying
//! defaults twice gives the same object as applying them once.

use crate::cluster::*;
use crate::kinds::backup::{Backup, BackupMethod};
use crate::kinds::database::{Database, DatabaseReclaimPolicy};
use crate::kinds::object_store::ObjectStore;
use crate::kinds::pooler::{PgBouncerPoolMode, Pooler, PoolerType};
use crate::kinds::publication::ReclaimPolicy;
use crate::kinds::scheduled_backup::{BackupOwnerReference, ScheduledBackup};
use pgherd_postgres::guc::DEFAULT_PARAMETERS;
use pgherd_postgres::version::major_from_image;

/// The PostgreSQL image used when a cluster names none.
pub const DEFAULT_IMAGE_NAME: &str = "ghcr.io/cloudnative-pg/postgresql:18.6-system-trixie";
/// The application database (and owner) created by default.
pub const DEFAULT_APP_DATABASE: &str = "app";
/// Annotation turning WAL archiving off.
pub const SKIP_WAL_ARCHIVING_ANNOTATION: &str = "cnpg.io/skipWalArchiving";
/// Annotation letting a new cluster archive into a folder that already holds WAL.
pub const SKIP_EMPTY_WAL_ARCHIVE_CHECK: &str = "cnpg.io/skipEmptyWalArchiveCheck";

/// Objects that know their defaults.
pub trait Defaults {
    /// Fill in every unset field that has a default.
    fn apply_defaults(&mut self);
}

fn set<T>(field: &mut Option<T>, value: T) {
    if field.is_none() {
        *field = Some(value);
    }
}

impl Cluster {
    /// Whether this cluster replicates from another cluster.
    pub fn is_replica(&self) -> bool {
        let Some(replica) = &self.spec.replica else {
            return false;
        };
        match replica.enabled {
            Some(enabled) => enabled,
            None => {
                let own = self.metadata.name.as_deref().unwrap_or_default();
                let self_name = replica.self_name.as_deref().unwrap_or(own);
                replica.primary.as_deref().is_some_and(|p| p != self_name)
            }
        }
    }

    /// Whether WAL archiving is turned off by annotation.
    pub fn wal_archiving_disabled(&self) -> bool {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(SKIP_WAL_ARCHIVING_ANNOTATION))
            .is_some_and(|v| v == "enabled")
    }

    /// The `archive_mode` the operator sets.
    pub fn archive_mode(&self) -> &'static str {
        if self.wal_archiving_disabled() {
            "off"
        } else if self.is_replica() {
            "always"
        } else {
            "on"
        }
    }

    /// The PostgreSQL image the cluster runs: `spec.imageName`, else the catalog's image as
    /// resolved into `status.image` (with `spec.imageCatalogRef`), else the default.
    pub fn image_name(&self) -> String {
        if let Some(image) = &self.spec.image_name {
            return image.clone();
        }
        if self.spec.image_catalog_ref.is_some() {
            if let Some(image) = self.status.as_ref().and_then(|s| s.image.clone()) {
                return image;
            }
        }
        DEFAULT_IMAGE_NAME.to_string()
    }

    /// The PostgreSQL major version, from the image catalog entry or the image tag.
    pub fn major_version(&self) -> Option<pgherd_postgres::MajorVersion> {
        if let Some(catalog) = &self.spec.image_catalog_ref {
            return u32::try_from(catalog.major)
                .ok()
                .map(pgherd_postgres::MajorVersion);
        }
        major_from_image(
            self.spec
                .image_name
                .as_deref()
                .unwrap_or(DEFAULT_IMAGE_NAME),
        )
        .ok()
    }

    /// The application database owner, from whichever bootstrap method is used.
    pub fn application_owner(&self) -> Option<&str> {
        let b = self.spec.bootstrap.as_ref()?;
        b.recovery
            .as_ref()
            .and_then(|r| r.owner.as_deref())
            .or_else(|| b.pg_basebackup.as_ref().and_then(|p| p.owner.as_deref()))
            .or_else(|| b.initdb.as_ref().and_then(|i| i.owner.as_deref()))
            .filter(|o| !o.is_empty())
    }
}

fn default_app_database(database: &mut Option<String>, owner: &mut Option<String>) {
    if database.as_deref().unwrap_or_default().is_empty() {
        *database = Some(DEFAULT_APP_DATABASE.to_string());
    }
    if owner.as_deref().unwrap_or_default().is_empty() {
        *owner = database.clone();
    }
}

fn default_bootstrap(bootstrap: &mut BootstrapConfiguration) {
    if let Some(recovery) = &mut bootstrap.recovery {
        default_app_database(&mut recovery.database, &mut recovery.owner);
    } else if let Some(clone) = &mut bootstrap.pg_basebackup {
        default_app_database(&mut clone.database, &mut clone.owner);
    } else {
        let initdb = bootstrap.initdb.get_or_insert_with(Default::default);
        let monolith = initdb
            .import
            .as_ref()
            .is_some_and(|i| i.import_type == ImportType::Monolith);
        if !monolith {
            default_app_database(&mut initdb.database, &mut initdb.owner);
        }
        set(&mut initdb.encoding, "UTF8".to_string());
        set(&mut initdb.locale_collate, "C".to_string());
        set(&mut initdb.locale_ctype, "C".to_string());
    }
}

fn default_storage(storage: &mut StorageConfiguration) {
    set(&mut storage.resize_in_use_volumes, true);
}

impl Defaults for Cluster {
    fn apply_defaults(&mut self) {
        let archive_mode = self.archive_mode();
        let app_owner_before = self.application_owner().map(str::to_string);
        let spec = &mut self.spec;
        if spec.image_name.is_none() && spec.image_catalog_ref.is_none() {
            spec.image_name = Some(DEFAULT_IMAGE_NAME.to_string());
        }
        set(&mut spec.instances, 1);
        set(&mut spec.postgres_uid, 26);
        set(&mut spec.postgres_gid, 26);
        set(&mut spec.min_sync_replicas, 0);
        set(&mut spec.max_sync_replicas, 0);
        set(&mut spec.log_level, LogLevel::Info);
        set(&mut spec.enable_pdb, true);
        set(&mut spec.enable_superuser_access, false);
        set(&mut spec.start_delay, 3600);
        set(&mut spec.stop_delay, 1800);
        set(&mut spec.smart_shutdown_timeout, 180);
        set(&mut spec.switchover_delay, 3600);
        set(&mut spec.failover_delay, 0);
        set(
            &mut spec.primary_update_strategy,
            PrimaryUpdateStrategy::Unsupervised,
        );
        set(
            &mut spec.primary_update_method,
            PrimaryUpdateMethod::Restart,
        );

        default_bootstrap(spec.bootstrap.get_or_insert_with(Default::default));

        if let Some(storage) = &mut spec.storage {
            default_storage(storage);
        }
        if let Some(storage) = &mut spec.wal_storage {
            default_storage(storage);
        }

        let affinity = spec.affinity.get_or_insert_with(Default::default);
        if affinity.enable_pod_anti_affinity != Some(false) {
            set(
                &mut affinity.pod_anti_affinity_type,
                "preferred".to_string(),
            );
        }

        if let Some(backup) = &mut spec.backup {
            set(&mut backup.target, BackupTarget::PreferStandby);
            if let Some(vs) = &mut backup.volume_snapshot {
                set(&mut vs.online, true);
                set(
                    &mut vs.snapshot_owner_reference,
                    SnapshotOwnerReference::None,
                );
                let online = vs.online_configuration.get_or_insert_with(Default::default);
                set(&mut online.wait_for_archive, true);
                set(&mut online.immediate_checkpoint, false);
            }
        }

        let postgresql = spec.postgresql.get_or_insert_with(Default::default);
        let parameters = postgresql.parameters.get_or_insert_with(Default::default);
        for (name, value) in DEFAULT_PARAMETERS {
            parameters
                .entry(name.to_string())
                .or_insert_with(|| value.to_string());
        }
        parameters
            .entry("archive_mode".to_string())
            .or_insert_with(|| archive_mode.to_string());
        if let Some(sync) = &mut postgresql.synchronous {
            set(&mut sync.data_durability, DataDurability::Required);
        }

        let monitoring = spec.monitoring.get_or_insert_with(Default::default);
        set(&mut monitoring.disable_default_queries, false);
        set(&mut monitoring.enable_pod_monitor, false);

        let slots = spec.replication_slots.get_or_insert_with(Default::default);
        let ha = slots.high_availability.get_or_insert_with(Default::default);
        set(&mut ha.enabled, true);
        set(&mut ha.slot_prefix, "_cnpg_".to_string());
        set(&mut slots.update_interval, 30);
        let sync_replicas = slots
            .synchronize_replicas
            .get_or_insert_with(Default::default);
        set(&mut sync_replicas.enabled, true);

        for tablespace in spec.tablespaces.iter_mut().flatten() {
            default_storage(&mut tablespace.storage);
            set(&mut tablespace.temporary, false);
            let owner = tablespace.owner.get_or_insert_with(Default::default);
            if owner.name.as_deref().unwrap_or_default().is_empty() {
                owner.name = Some(
                    app_owner_before
                        .clone()
                        .unwrap_or_else(|| "postgres".to_string()),
                );
            }
        }

        for role in spec
            .managed
            .iter_mut()
            .flat_map(|m| m.roles.iter_mut().flatten())
        {
            default_role(role);
        }
        for service in spec
            .managed
            .iter_mut()
            .flat_map(|m| m.services.iter_mut())
            .flat_map(|s| s.additional.iter_mut().flatten())
        {
            set(&mut service.update_strategy, ServiceUpdateStrategy::Patch);
        }
        for plugin in spec.plugins.iter_mut().flatten() {
            set(&mut plugin.enabled, true);
            set(&mut plugin.is_wal_archiver, false);
        }
        for external in spec.external_clusters.iter_mut().flatten() {
            if let Some(plugin) = &mut external.plugin {
                set(&mut plugin.enabled, true);
                set(&mut plugin.is_wal_archiver, false);
            }
        }

        let probes = spec.probes.get_or_insert_with(Default::default);
        let liveness = probes.liveness.get_or_insert_with(Default::default);
        let isolation = liveness
            .isolation_check
            .get_or_insert_with(Default::default);
        set(&mut isolation.enabled, true);
        set(&mut isolation.request_timeout, 1000);
        set(&mut isolation.connection_timeout, 1000);

        if let Some(lease) = &mut spec.primary_lease {
            set(&mut lease.lease_duration_seconds, 15);
            set(&mut lease.renew_deadline_seconds, 10);
            set(&mut lease.retry_period_seconds, 2);
            set(&mut lease.released_lease_duration_seconds, 1);
        }
        if let Some(window) = &mut spec.node_maintenance_window {
            set(&mut window.in_progress, false);
            set(&mut window.reuse_pvc, true);
        }
    }
}

impl Defaults for Backup {
    fn apply_defaults(&mut self) {
        set(&mut self.spec.method, BackupMethod::BarmanObjectStore);
        if let Some(online) = &mut self.spec.online_configuration {
            set(&mut online.wait_for_archive, true);
        }
    }
}

impl Defaults for ScheduledBackup {
    fn apply_defaults(&mut self) {
        set(&mut self.spec.method, BackupMethod::BarmanObjectStore);
        set(
            &mut self.spec.backup_owner_reference,
            BackupOwnerReference::None,
        );
        if let Some(online) = &mut self.spec.online_configuration {
            set(&mut online.wait_for_archive, true);
        }
    }
}

impl Defaults for Pooler {
    fn apply_defaults(&mut self) {
        set(&mut self.spec.instances, 1);
        set(&mut self.spec.pooler_type, PoolerType::Rw);
        set(
            &mut self.spec.pgbouncer.pool_mode,
            PgBouncerPoolMode::Session,
        );
        set(&mut self.spec.pgbouncer.paused, false);
        if let Some(monitoring) = &mut self.spec.monitoring {
            set(&mut monitoring.enable_pod_monitor, false);
            if let Some(tls) = &mut monitoring.tls {
                set(&mut tls.enabled, false);
            }
        }
    }
}

impl Defaults for Database {
    fn apply_defaults(&mut self) {
        set(&mut self.spec.ensure, EnsureOption::Present);
        set(
            &mut self.spec.database_reclaim_policy,
            DatabaseReclaimPolicy::Retain,
        );
        for schema in self.spec.schemas.iter_mut().flatten() {
            set(&mut schema.ensure, EnsureOption::Present);
        }
        for extension in self.spec.extensions.iter_mut().flatten() {
            set(&mut extension.ensure, EnsureOption::Present);
        }
        for fdw in self.spec.fdws.iter_mut().flatten() {
            set(&mut fdw.ensure, EnsureOption::Present);
            default_options_and_usage(&mut fdw.options, &mut fdw.usage);
        }
        for server in self.spec.servers.iter_mut().flatten() {
            set(&mut server.ensure, EnsureOption::Present);
            default_options_and_usage(&mut server.options, &mut server.usage);
        }
    }
}

fn default_options_and_usage(
    options: &mut Option<Vec<crate::kinds::database::OptionSpec>>,
    usage: &mut Option<Vec<crate::kinds::database::UsageSpec>>,
) {
    for option in options.iter_mut().flatten() {
        set(&mut option.ensure, EnsureOption::Present);
    }
    for u in usage.iter_mut().flatten() {
        set(&mut u.usage_type, crate::kinds::database::UsageType::Grant);
    }
}

impl Defaults for ObjectStore {
    fn apply_defaults(&mut self) {
        if let Some(sidecar) = &mut self.spec.instance_sidecar_configuration {
            set(&mut sidecar.log_level, "info".to_string());
            set(&mut sidecar.retention_policy_interval_seconds, 1800);
        }
    }
}

/// The defaults of a role, in `spec.managed.roles` and in a DatabaseRole alike.
fn default_role(role: &mut crate::cluster::RoleConfiguration) {
    set(&mut role.ensure, EnsureOption::Present);
    set(&mut role.inherit, true);
    set(&mut role.connection_limit, -1);
}

impl Defaults for crate::DatabaseRole {
    fn apply_defaults(&mut self) {
        default_role(&mut self.spec.role);
        set(
            &mut self.spec.database_role_reclaim_policy,
            ReclaimPolicy::Retain,
        );
        if let Some(certificate) = &mut self.spec.client_certificate {
            set(&mut certificate.enabled, true);
        }
    }
}

impl Defaults for crate::Publication {
    fn apply_defaults(&mut self) {
        set(
            &mut self.spec.publication_reclaim_policy,
            ReclaimPolicy::Retain,
        );
    }
}

impl Defaults for crate::Subscription {
    fn apply_defaults(&mut self) {
        set(
            &mut self.spec.subscription_reclaim_policy,
            ReclaimPolicy::Retain,
        );
    }
}

impl Defaults for crate::ImageCatalog {
    fn apply_defaults(&mut self) {}
}

impl Defaults for crate::ClusterImageCatalog {
    fn apply_defaults(&mut self) {}
}
