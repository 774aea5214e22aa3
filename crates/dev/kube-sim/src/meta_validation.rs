//! ObjectMeta validation (API reference "Object Names and IDs" and "Labels and Selectors:
//! Syntax and character set", "Annotations"): names as DNS-1123 subdomains, or labels for
//! Namespaces and Services (DNS-1035 for Services); label keys and values (63 characters,
//! optional DNS prefix); annotations at most 256 KiB in total.

use crate::error::Cause;
use crate::registry::ResourceType;
use serde_json::Value;

fn alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// DNS-1123 label: at most 63 of `[a-z0-9-]`, alphanumeric at both ends.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| alnum(c) || c == '-')
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// DNS-1123 subdomain: at most 253, dot-separated labels.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

fn label_name_ok(s: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(ok_char)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn label_key_ok(k: &str) -> bool {
    match k.split_once('/') {
        Some((prefix, name)) => is_dns_subdomain(prefix) && label_name_ok(name),
        None => label_name_ok(k),
    }
}

fn invalid(field: String, message: String) -> Cause {
    Cause {
        field,
        reason: "FieldValueInvalid",
        message,
    }
}

/// Problems with the object's name, labels and annotations.
pub fn check(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let name_ok = match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Namespace") => is_dns_label(name),
        ("", "Service") => is_dns_label(name) && name.starts_with(|c: char| c.is_ascii_lowercase()),
        _ => is_dns_subdomain(name),
    };
    if !name_ok {
        let what = match rt.kind.as_str() {
            "Namespace" => "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', start and end with an alphanumeric character, and be at most 63 characters",
            "Service" if rt.group.is_empty() => "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, end with an alphanumeric character, and be at most 63 characters",
            _ => "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', must start and end with an alphanumeric character, and be at most 253 characters",
        };
        out.push(invalid(
            "metadata.name".into(),
            format!("Invalid value: {name:?}: {what}"),
        ));
    }
    for (k, v) in meta["labels"].as_object().into_iter().flatten() {
        let field = format!("metadata.labels[{k}]");
        if !label_key_ok(k) {
            out.push(invalid(field.clone(), format!("Invalid value: {k:?}: name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, at most 63 characters, with an optional DNS subdomain prefix and '/'")));
        }
        let value = v.as_str().unwrap_or_default();
        if !(value.is_empty() || label_name_ok(value)) {
            out.push(invalid(field, format!("Invalid value: {value:?}: a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)")));
        }
    }
    let size: usize = meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if size > 256 * 1024 {
        out.push(Cause {
            field: "metadata.annotations".into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: must have at most 262144 bytes, got {size}"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_labels() {
        assert!(is_dns_label("cluster-example-1"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("a.b-c.d"));
        assert!(label_key_ok("cnpg.io/instanceRole"));
        assert!(!label_key_ok("bad key"));
        assert!(!label_name_ok(&"x".repeat(64)));
    }
}
