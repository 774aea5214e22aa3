//! PostgreSQL versions, and how a container image reference names one.
//!
//! This follows how CloudNativePG reads an image: a reference with neither tag nor digest means
//! `latest`, which names no version (and upgrades could not be detected); a reference pinned
//! only by digest names none either. Otherwise the tag must *start* with a version — a run of
//! digits and dots such as `18.6` — and whatever follows (`-system-trixie`, `-alpine`, `beta1`)
//! is ignored. The major version is the first number.

use std::fmt;

/// The oldest major version a cluster may run (the webhook's floor).
pub const MINIMUM_SUPPORTED_MAJOR: u32 = 13;

/// A PostgreSQL major version (`13`, `16`, `18`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MajorVersion(pub u32);

impl fmt::Display for MajorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why an image reference names no usable PostgreSQL version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    #[error("image {image:?} has no tag, which means `latest`: the PostgreSQL version (and so any upgrade) cannot be known")]
    Latest { image: String },
    #[error("image {image:?} is pinned only by digest, so its PostgreSQL version is unknown")]
    DigestOnly { image: String },
    #[error("image tag {tag:?} does not start with a PostgreSQL version such as 16 or 17.2")]
    NotAVersion { tag: String },
}

/// The parts of an image reference that matter here: `registry/repo:tag@digest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference<'a> {
    pub repository: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

impl<'a> ImageReference<'a> {
    /// Split an image reference. A `:` before the last `/` belongs to a registry port, not
    /// to the tag (`registry:5000/postgres:16`).
    pub fn parse(image: &'a str) -> Self {
        let (name, digest) = match image.split_once('@') {
            Some((name, digest)) => (name, Some(digest)),
            None => (image, None),
        };
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        match name[last_slash..].rfind(':') {
            Some(colon) => {
                let split = last_slash + colon;
                ImageReference {
                    repository: &name[..split],
                    tag: Some(&name[split + 1..]),
                    digest,
                }
            }
            None => ImageReference {
                repository: name,
                tag: None,
                digest,
            },
        }
    }
}

/// The major version named by an image tag (`17.2` → 17, `16-alpine` → 16, `9.6` → 9).
pub fn major_from_tag(tag: &str) -> Result<MajorVersion, VersionError> {
    let not_a_version = || VersionError::NotAVersion {
        tag: tag.to_string(),
    };
    // The longest prefix made of digits, each optionally followed by one dot.
    let bytes = tag.as_bytes();
    let mut end = 0;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        if end < bytes.len() && bytes[end] == b'.' {
            end += 1;
        }
    }
    let mut parts = tag[..end].split('.');
    let major = parts.next().unwrap_or_default();
    let minor = parts.next();
    // `16.` or `16.-x` leave an empty minor, which CloudNativePG rejects.
    if major.is_empty() || minor == Some("") {
        return Err(not_a_version());
    }
    major
        .parse::<u32>()
        .map(MajorVersion)
        .map_err(|_| not_a_version())
}

/// The major version named by a whole image reference.
pub fn major_from_image(image: &str) -> Result<MajorVersion, VersionError> {
    let reference = ImageReference::parse(image);
    match (reference.tag, reference.digest) {
        (Some("latest"), _) | (None, None) => Err(VersionError::Latest {
            image: image.to_string(),
        }),
        (Some(tag), _) => major_from_tag(tag),
        (None, Some(_)) => Err(VersionError::DigestOnly {
            image: image.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn majors_from_common_images() {
        let cases = [
            ("ghcr.io/cloudnative-pg/postgresql:16.3", 16),
            ("ghcr.io/cloudnative-pg/postgresql:18.6-system-trixie", 18),
            ("ghcr.io/cloudnative-pg/postgresql:17.2", 17),
            ("postgres:16-alpine", 16),
            ("registry.local:5000/pg/postgresql:15.4@sha256:abcd", 15),
            ("postgresql:13", 13),
            ("postgres:9.6", 9),
            ("x:17beta1", 17),
            ("x:13.3.2.1-1", 13),
        ];
        for (image, major) in cases {
            assert_eq!(major_from_image(image), Ok(MajorVersion(major)), "{image}");
        }
    }

    #[test]
    fn images_without_a_version() {
        assert!(matches!(
            major_from_image("postgres:latest"),
            Err(VersionError::Latest { .. })
        ));
        assert!(matches!(
            major_from_image("registry:5000/postgres"),
            Err(VersionError::Latest { .. })
        ));
        assert!(matches!(
            major_from_image("postgres@sha256:abc"),
            Err(VersionError::DigestOnly { .. })
        ));
        for bad in ["v16", "bookworm", "test_12", "16.", "16.-x"] {
            assert!(
                matches!(major_from_tag(bad), Err(VersionError::NotAVersion { .. })),
                "{bad}"
            );
        }
        assert!(matches!(
            major_from_tag(""),
            Err(VersionError::NotAVersion { .. })
        ));
    }

    #[test]
    fn registry_port_is_not_a_tag() {
        let r = ImageReference::parse("registry:5000/postgres:17");
        assert_eq!(r.repository, "registry:5000/postgres");
        assert_eq!(r.tag, Some("17"));
    }
}
