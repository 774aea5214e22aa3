//! Names of generated objects, as CloudNativePG derives them, and the checks that keep every
//! name and label value inside Kubernetes' limits.
//!
//! A Cluster name is at most 50 characters (the webhook's rule); `NAME-N-wal` then fits 63
//! characters up to an 8-digit serial. Names derived from user input (tablespaces, additional
//! services) can still overflow, and are refused with a [`BuildError::TooLong`] that names the
//! owner and the limit instead of being truncated (a truncated name could collide).

use crate::error::{BuildError, Result};

/// Longest DNS-1123 label, label value, hostname and Service name.
pub const MAX_LABEL: usize = 63;

/// Longest container port name (IANA_SVC_NAME).
pub const MAX_PORT_NAME: usize = 15;

/// The owner an object is generated for: its kind and name, for messages.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    pub kind: &'static str,
    pub name: &'a str,
}

impl Owner<'_> {
    fn too_long(&self, what: &str, value: &str, limit: usize) -> BuildError {
        BuildError::TooLong {
            kind: self.kind,
            owner: self.name.to_string(),
            what: what.to_string(),
            value: value.to_string(),
            len: value.len(),
            limit,
        }
    }

    fn malformed(&self, what: &str, value: &str, rule: &'static str) -> BuildError {
        BuildError::Malformed {
            kind: self.kind,
            owner: self.name.to_string(),
            what: what.to_string(),
            value: value.to_string(),
            rule,
        }
    }

    /// `value` must be a DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
    /// Object names are checked with this stricter rule (rather than DNS-1123 subdomain) because
    /// every generated name also becomes a label value, a hostname or a Service name.
    pub fn check_name(&self, what: &str, value: &str) -> Result<()> {
        if value.len() > MAX_LABEL {
            return Err(self.too_long(what, value, MAX_LABEL));
        }
        let ok_chars = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let ok_ends = value
            .bytes()
            .next()
            .zip(value.bytes().last())
            .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
        if !ok_chars || !ok_ends {
            return Err(self.malformed(
                what,
                value,
                "a DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit",
            ));
        }
        Ok(())
    }

    /// `value` must be a valid label value: at most 63 of `[A-Za-z0-9._-]`, alphanumeric at
    /// both ends, or empty.
    pub fn check_label_value(&self, key: &str, value: &str) -> Result<()> {
        let what = format!("label {key}");
        if value.len() > MAX_LABEL {
            return Err(self.too_long(&what, value, MAX_LABEL));
        }
        if value.is_empty() {
            return Ok(());
        }
        let ok_chars = value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        let ok_ends = value
            .bytes()
            .next()
            .zip(value.bytes().last())
            .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
        if !ok_chars || !ok_ends {
            return Err(self.malformed(
                &what,
                value,
                "a label value: letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
            ));
        }
        Ok(())
    }
}

/// Instance `serial` of `cluster`: the pod, its data PVC and its hostname (`NAME-N`).
pub fn instance_name(cluster: &str, serial: u32) -> String {
    format!("{cluster}-{serial}")
}

/// The WAL PVC of an instance (`NAME-N-wal`).
pub fn wal_pvc_name(instance: &str) -> String {
    format!("{instance}-wal")
}

/// A tablespace name as it appears in object names: lowercase, a leading `_` becomes `1` and
/// every other `_` a `-` (tablespace names are SQL identifiers, object names DNS labels).
pub fn tablespace_slug(tablespace: &str) -> String {
    let lower = tablespace.to_lowercase();
    let mut out = String::with_capacity(lower.len());
    for (i, c) in lower.chars().enumerate() {
        out.push(match (i, c) {
            (0, '_') => '1',
            (_, '_') => '-',
            (_, c) => c,
        });
    }
    out
}

/// The PVC of a tablespace of an instance (`NAME-N-tbs-<tablespace>`).
pub fn tablespace_pvc_name(instance: &str, tablespace: &str) -> String {
    format!("{instance}-tbs-{}", tablespace_slug(tablespace))
}

/// The read-write Service (`NAME-rw`), selecting the primary.
pub fn rw_service(cluster: &str) -> String {
    format!("{cluster}-rw")
}

/// The read-only Service (`NAME-ro`), selecting the replicas.
pub fn ro_service(cluster: &str) -> String {
    format!("{cluster}-ro")
}

/// The read Service (`NAME-r`), selecting every instance.
pub fn r_service(cluster: &str) -> String {
    format!("{cluster}-r")
}

/// The application user's Secret (`NAME-app`).
pub fn app_secret(cluster: &str) -> String {
    format!("{cluster}-app")
}

/// The superuser's Secret (`NAME-superuser`).
pub fn superuser_secret(cluster: &str) -> String {
    format!("{cluster}-superuser")
}

/// The cluster CA's Secret (`NAME-ca`).
pub fn ca_secret(cluster: &str) -> String {
    format!("{cluster}-ca")
}

/// The server certificate's Secret (`NAME-server`).
pub fn server_secret(cluster: &str) -> String {
    format!("{cluster}-server")
}

/// The `streaming_replica` client certificate's Secret (`NAME-replication`).
pub fn replication_secret(cluster: &str) -> String {
    format!("{cluster}-replication")
}

/// The PgBouncer client certificate's Secret (`NAME-pooler`), made while a Pooler uses the
/// cluster.
pub fn pooler_secret(cluster: &str) -> String {
    format!("{cluster}-pooler")
}

/// The primary's PodDisruptionBudget (`NAME-primary`).
pub fn primary_pdb(cluster: &str) -> String {
    format!("{cluster}-primary")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OWNER: Owner<'static> = Owner {
        kind: "Cluster",
        name: "c",
    };

    #[test]
    fn names_at_the_limit_pass_and_one_more_fails() {
        let exactly = "a".repeat(63);
        OWNER.check_name("Pod name", &exactly).unwrap();
        OWNER
            .check_label_value("cnpg.io/cluster", &exactly)
            .unwrap();
        let over = "a".repeat(64);
        let err = OWNER.check_name("Pod name", &over).unwrap_err().to_string();
        assert!(err.contains("64 characters"), "{err}");
        assert!(err.contains("limit of 63"), "{err}");
        assert!(err.contains("Cluster \"c\""), "{err}");
        let err = OWNER
            .check_label_value("cnpg.io/instanceName", &over)
            .unwrap_err()
            .to_string();
        assert!(err.contains("label cnpg.io/instanceName"), "{err}");
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in ["", "-a", "a-", "A", "a_b", "a.b"] {
            assert!(OWNER.check_name("name", bad).is_err(), "{bad:?}");
        }
        for good in ["", "a.b", "A_b", "primary"] {
            OWNER.check_label_value("k", good).unwrap();
        }
        assert!(OWNER.check_label_value("k", "-a").is_err());
    }

    #[test]
    fn derived_names() {
        let i = instance_name("pg", 3);
        assert_eq!(i, "pg-3");
        assert_eq!(wal_pvc_name(&i), "pg-3-wal");
        assert_eq!(tablespace_pvc_name(&i, "_Tbs_one"), "pg-3-tbs-1tbs-one");
        assert_eq!(rw_service("pg"), "pg-rw");
        assert_eq!(primary_pdb("pg"), "pg-primary");
    }

    #[test]
    fn the_longest_cluster_name_fits_every_instance_name() {
        // The webhook accepts cluster names up to 50 characters.
        let cluster = "c".repeat(50);
        let instance = instance_name(&cluster, 99_999_999);
        OWNER
            .check_name("PVC name", &wal_pvc_name(&instance))
            .unwrap();
        OWNER
            .check_name("Service name", &rw_service(&cluster))
            .unwrap();
        OWNER
            .check_name("PDB name", &primary_pdb(&cluster))
            .unwrap();
        OWNER
            .check_name("Secret name", &replication_secret(&cluster))
            .unwrap();
    }
}
