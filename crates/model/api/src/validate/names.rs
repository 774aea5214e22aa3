//! Kubernetes name rules.

/// A DNS-1035 label: lowercase letter first, then lowercase letters, digits and `-`, not
/// ending in `-`, at most 63 characters.
pub fn is_dns1035_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels of lowercase alphanumerics and `-`, at most 253
/// characters.
pub fn is_dns1123_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(is_dns1035_label("postgres-cluster"));
        assert!(!is_dns1035_label("1cluster"));
        assert!(!is_dns1035_label("Cluster"));
        assert!(!is_dns1035_label("cluster-"));
        assert!(!is_dns1035_label(""));
        assert!(is_dns1123_subdomain("b2-cnpg-credentials"));
        assert!(is_dns1123_subdomain("a.b"));
        assert!(!is_dns1123_subdomain("a_b"));
    }
}
