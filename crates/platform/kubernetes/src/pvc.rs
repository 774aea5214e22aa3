//! The PersistentVolumeClaims of an instance: `NAME-N` (PGDATA), `NAME-N-wal` (with
//! `walStorage`) and `NAME-N-tbs-<tablespace>` (one per tablespace), from `size`,
//! `storageClass` and `pvcTemplate`, labelled with their `cnpg.io/pvcRole`.
//!
//! Growing a claim is applying the same object with the larger size (the API server resizes
//! online when the StorageClass allows it); [`resize`] says whether a new size may be applied.

use crate::error::Result;
use crate::labels::{self, map, Base};
use crate::names;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use pgherd_api::cluster::StorageConfiguration;
use pgherd_api::Cluster;
use std::collections::BTreeMap;

/// What a claim holds (`cnpg.io/pvcRole`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvcRole {
    Data,
    Wal,
    Tablespace,
}

impl PvcRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PvcRole::Data => "PG_DATA",
            PvcRole::Wal => "PG_WAL",
            PvcRole::Tablespace => "PG_TABLESPACE",
        }
    }
}

/// A claim's lifecycle (`cnpg.io/pvcStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PvcStatus {
    /// Created, not yet holding a usable instance.
    Initializing,
    /// Holds a usable instance.
    Ready,
    /// Kept after its instance was destroyed.
    Detached,
}

impl PvcStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PvcStatus::Initializing => "initializing",
            PvcStatus::Ready => "ready",
            PvcStatus::Detached => "detached",
        }
    }
}

fn claim_spec(
    base: &Base,
    storage: &StorageConfiguration,
    field: &str,
) -> Result<PersistentVolumeClaimSpec> {
    let mut spec = storage.pvc_template.clone().unwrap_or_default();
    if spec.access_modes.as_ref().is_none_or(Vec::is_empty) {
        spec.access_modes = Some(vec!["ReadWriteOnce".to_string()]);
    }
    if let Some(class) = &storage.storage_class {
        spec.storage_class_name = Some(class.clone());
    }
    let resources = spec
        .resources
        .get_or_insert_with(VolumeResourceRequirements::default);
    let requests = resources.requests.get_or_insert_with(BTreeMap::new);
    if let Some(size) = &storage.size {
        requests.insert("storage".to_string(), Quantity(size.clone()));
    }
    if !requests.contains_key("storage") {
        return Err(base.spec_error(format!(
            "{field} needs a size (or pvcTemplate.resources.requests.storage)"
        )));
    }
    Ok(spec)
}

/// The claims of one instance.
struct Claims<'a> {
    base: &'a Base,
    instance: &'a str,
    serial: u32,
    status: PvcStatus,
}

impl Claims<'_> {
    fn claim(
        &self,
        name: &str,
        role: PvcRole,
        tablespace: Option<&str>,
        spec: PersistentVolumeClaimSpec,
    ) -> Result<PersistentVolumeClaim> {
        let mut claim_labels = map([
            (labels::CLUSTER, &self.base.name),
            (labels::INSTANCE_NAME, self.instance),
            (labels::PVC_ROLE, role.as_str()),
        ]);
        if let Some(tablespace) = tablespace {
            claim_labels.insert(labels::TABLESPACE_NAME.into(), tablespace.into());
        }
        let annotations = map([
            (labels::NODE_SERIAL, &self.serial.to_string()),
            (labels::PVC_STATUS, self.status.as_str()),
        ]);
        Ok(PersistentVolumeClaim {
            metadata: self.base.meta(name, claim_labels, annotations)?,
            spec: Some(spec),
            status: None,
        })
    }
}

/// Every claim of instance `serial`, data first.
pub fn instance_pvcs(
    cluster: &Cluster,
    serial: u32,
    status: PvcStatus,
) -> Result<Vec<PersistentVolumeClaim>> {
    let base = Base::of_cluster(cluster)?;
    let instance = names::instance_name(&base.name, serial);
    let spec = &cluster.spec;
    let data = spec
        .storage
        .as_ref()
        .ok_or_else(|| base.spec_error("spec.storage is required on Kubernetes"))?;
    let claims = Claims {
        base: &base,
        instance: &instance,
        serial,
        status,
    };
    let mut out = vec![claims.claim(
        &instance,
        PvcRole::Data,
        None,
        claim_spec(&base, data, "spec.storage")?,
    )?];
    if let Some(wal) = &spec.wal_storage {
        out.push(claims.claim(
            &names::wal_pvc_name(&instance),
            PvcRole::Wal,
            None,
            claim_spec(&base, wal, "spec.walStorage")?,
        )?);
    }
    for (i, tablespace) in spec.tablespaces.iter().flatten().enumerate() {
        out.push(claims.claim(
            &names::tablespace_pvc_name(&instance, &tablespace.name),
            PvcRole::Tablespace,
            Some(&tablespace.name),
            claim_spec(
                &base,
                &tablespace.storage,
                &format!("spec.tablespaces[{i}].storage"),
            )?,
        )?);
    }
    Ok(out)
}

/// What applying a new requested size to a claim does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resize {
    /// Same size: nothing to do.
    Unchanged,
    /// Larger: apply it (online when the StorageClass allows expansion).
    Grow,
    /// Smaller: Kubernetes refuses to shrink a claim; keep the current size.
    RefuseShrink,
    /// One of the sizes is not a quantity pgherd can compare.
    Unknown,
}

/// Compare a claim's current request with the desired one.
pub fn resize(current: &Quantity, desired: &Quantity) -> Resize {
    match (bytes(&current.0), bytes(&desired.0)) {
        (Some(c), Some(d)) if d == c => Resize::Unchanged,
        (Some(c), Some(d)) if d > c => Resize::Grow,
        (Some(_), Some(_)) => Resize::RefuseShrink,
        _ => Resize::Unknown,
    }
}

/// Bytes of a storage quantity (`10Gi`, `500M`, `1e9`, `1073741824`).
fn bytes(quantity: &str) -> Option<u128> {
    let q = quantity.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let multiplier: u128 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        s if s.starts_with(['e', 'E']) => 10u128.checked_pow(s[1..].parse().ok()?)?,
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut total = whole.checked_mul(multiplier)?;
    if !fraction.is_empty() {
        let scale = 10u128.checked_pow(u32::try_from(fraction.len()).ok()?)?;
        let f: u128 = fraction.parse().ok()?;
        total = total.checked_add(f.checked_mul(multiplier)? / scale)?;
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.to_string())
    }

    #[test]
    fn resize_grows_and_never_shrinks() {
        assert_eq!(resize(&q("1Gi"), &q("1Gi")), Resize::Unchanged);
        assert_eq!(resize(&q("1Gi"), &q("1024Mi")), Resize::Unchanged);
        assert_eq!(resize(&q("1Gi"), &q("2Gi")), Resize::Grow);
        assert_eq!(resize(&q("1G"), &q("1Gi")), Resize::Grow);
        assert_eq!(resize(&q("2Gi"), &q("1.5Gi")), Resize::RefuseShrink);
        assert_eq!(resize(&q("1e9"), &q("1G")), Resize::Unchanged);
        assert_eq!(resize(&q("1Gi"), &q("lots")), Resize::Unknown);
    }

    #[test]
    fn claims_follow_storage_wal_and_tablespaces() {
        let mut c = Cluster::new("pg", Default::default());
        c.metadata.uid = Some("u".into());
        assert!(instance_pvcs(&c, 1, PvcStatus::Initializing).is_err());
        c.spec.storage = Some(StorageConfiguration {
            size: Some("1Gi".into()),
            storage_class: Some("fast".into()),
            ..Default::default()
        });
        c.spec.wal_storage = c.spec.storage.clone();
        c.spec.tablespaces = Some(vec![pgherd_api::cluster::TablespaceConfiguration {
            name: "idx_1".into(),
            storage: c.spec.storage.clone().unwrap(),
            ..Default::default()
        }]);
        let claims = instance_pvcs(&c, 2, PvcStatus::Initializing).unwrap();
        let names: Vec<_> = claims
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["pg-2", "pg-2-wal", "pg-2-tbs-idx-1"]);
        let roles: Vec<_> = claims
            .iter()
            .map(|p| p.metadata.labels.as_ref().unwrap()[labels::PVC_ROLE].clone())
            .collect();
        assert_eq!(roles, ["PG_DATA", "PG_WAL", "PG_TABLESPACE"]);
        let spec = claims[0].spec.as_ref().unwrap();
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.access_modes.as_deref(),
            Some(&["ReadWriteOnce".to_string()][..])
        );
    }
}
