//! PostgreSQL versions, and how a container image reference names one.
//!
//! CloudNativePG reads the major version out of the image *tag*: the tag is cut at the first
//! `-` or `_` (so `18.6-system-trixie` and `16_1` keep `18.6` and `16`), and what remains must
//! be one to three dot-separated numbers. A tag such as `latest`, or an image pinned only by
//! digest, names no version, and the cluster must then say which major it wants.

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
    #[error("image {image:?} has no tag, so its PostgreSQL version is unknown")]
    NoTag { image: String },
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
    let version = tag.split(['-', '_']).next().unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    let numeric = !parts.is_empty()
        && parts.len() <= 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit()));
    if !numeric {
        return Err(VersionError::NotAVersion {
            tag: tag.to_string(),
        });
    }
    // Checked above: all parts are 1..=9 ASCII digits, so this parse cannot fail.
    let major: u32 = parts[0].parse().unwrap_or_default();
    Ok(MajorVersion(major))
}

/// The major version named by a whole image reference.
pub fn major_from_image(image: &str) -> Result<MajorVersion, VersionError> {
    match ImageReference::parse(image).tag {
        Some(tag) => major_from_tag(tag),
        None => Err(VersionError::NoTag {
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
            ("x:16_1", 16),
        ];
        for (image, major) in cases {
            assert_eq!(major_from_image(image), Ok(MajorVersion(major)), "{image}");
        }
    }

    #[test]
    fn images_without_a_version() {
        assert!(matches!(
            major_from_image("postgres:latest"),
            Err(VersionError::NotAVersion { .. })
        ));
        assert!(matches!(
            major_from_image("registry:5000/postgres"),
            Err(VersionError::NoTag { .. })
        ));
        assert!(matches!(
            major_from_image("postgres@sha256:abc"),
            Err(VersionError::NoTag { .. })
        ));
        assert!(matches!(
            major_from_tag("1.2.3.4"),
            Err(VersionError::NotAVersion { .. })
        ));
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
