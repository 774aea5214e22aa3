//! Parsing barman's `destinationPath` into a provider, a bucket (or container) and a prefix.

use std::fmt;
use std::path::PathBuf;

/// Where a `destinationPath` points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `s3://bucket/prefix`
    S3 {
        /// Bucket name.
        bucket: String,
        /// Prefix inside the bucket, without leading or trailing `/` (may be empty).
        prefix: String,
    },
    /// `gs://bucket/prefix`
    Gcs {
        /// Bucket name.
        bucket: String,
        /// Prefix inside the bucket.
        prefix: String,
    },
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER/prefix`, or emulated storage (Azurite)
    /// as barman-cloud reads it: `http(s)://HOST:PORT/ACCOUNT/CONTAINER/prefix`.
    Azure {
        /// Storage account.
        account: String,
        /// Container.
        container: String,
        /// Prefix inside the container.
        prefix: String,
        /// Emulated storage: the account's URL (`http://HOST:PORT/ACCOUNT`).
        emulator: Option<String>,
    },
    /// `file:///dir` (local platform): objects are files under `dir`.
    File {
        /// The root directory.
        root: PathBuf,
    },
}

/// Why a `destinationPath` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("destinationPath {path:?} {reason}")]
pub struct DestinationError {
    /// The path as given.
    pub path: String,
    /// What is wrong and what is expected.
    pub reason: String,
}

fn split_bucket(rest: &str) -> (String, String) {
    let rest = rest.trim_start_matches('/');
    match rest.split_once('/') {
        Some((b, p)) => (b.to_string(), p.trim_matches('/').to_string()),
        None => (rest.to_string(), String::new()),
    }
}

impl Destination {
    /// Parses a barman `destinationPath`.
    pub fn parse(path: &str) -> Result<Self, DestinationError> {
        let err = |reason: &str| DestinationError {
            path: path.to_string(),
            reason: reason.to_string(),
        };
        let (scheme, rest) = path.split_once("://").ok_or_else(|| {
            err("has no scheme: use s3://BUCKET/PREFIX, gs://BUCKET/PREFIX, https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX or file:///DIR")
        })?;
        let dest = match scheme {
            "s3" => {
                let (bucket, prefix) = split_bucket(rest);
                Destination::S3 { bucket, prefix }
            }
            "gs" => {
                let (bucket, prefix) = split_bucket(rest);
                Destination::Gcs { bucket, prefix }
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(err("must be absolute: file:///DIR"));
                }
                if rest.split('/').any(|c| c == "..") {
                    return Err(err("must not contain '..'"));
                }
                Destination::File {
                    root: PathBuf::from(rest),
                }
            }
            "https" | "http" => {
                let (host, path_part) = rest.split_once('/').unwrap_or((rest, ""));
                let (account, emulator, path_part) = match host
                    .strip_suffix(".blob.core.windows.net")
                {
                    Some(account) => (account.to_string(), None, path_part),
                    None => {
                        // Emulated storage: the account is the first path segment.
                        let (account, rest) = path_part.split_once('/').unwrap_or((path_part, ""));
                        if host.is_empty() || account.is_empty() {
                            return Err(err("is an http(s) URL but neither Azure Blob Storage (https://ACCOUNT.blob.core.windows.net/CONTAINER/PREFIX) nor emulated Azure storage (http://HOST:PORT/ACCOUNT/CONTAINER/PREFIX); for an S3-compatible service use s3://BUCKET/PREFIX with endpointURL"));
                        }
                        (
                            account.to_string(),
                            Some(format!("{scheme}://{host}/{account}")),
                            rest,
                        )
                    }
                };
                let (container, prefix) = split_bucket(path_part);
                if container.is_empty() {
                    return Err(err("names no container"));
                }
                return Ok(Destination::Azure {
                    account,
                    container,
                    prefix,
                    emulator,
                });
            }
            other => {
                return Err(err(&format!(
                    "has an unsupported scheme {other:?} (s3, gs, https for Azure, file)"
                )))
            }
        };
        match &dest {
            Destination::S3 { bucket, .. } | Destination::Gcs { bucket, .. }
                if bucket.is_empty() =>
            {
                Err(err("names no bucket"))
            }
            _ => Ok(dest),
        }
    }

    /// The prefix inside the bucket (empty for `file://`, whose root is the directory).
    pub fn prefix(&self) -> &str {
        match self {
            Destination::S3 { prefix, .. }
            | Destination::Gcs { prefix, .. }
            | Destination::Azure { prefix, .. } => prefix,
            Destination::File { .. } => "",
        }
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                format!("/{p}")
            }
        };
        match self {
            Destination::S3 { bucket, prefix } => write!(f, "s3://{bucket}{}", join(prefix)),
            Destination::Gcs { bucket, prefix } => write!(f, "gs://{bucket}{}", join(prefix)),
            Destination::Azure {
                account,
                container,
                prefix,
                emulator: None,
            } => write!(
                f,
                "https://{account}.blob.core.windows.net/{container}{}",
                join(prefix)
            ),
            Destination::Azure {
                container,
                prefix,
                emulator: Some(url),
                ..
            } => write!(f, "{url}/{container}{}", join(prefix)),
            Destination::File { root } => write!(f, "file://{}", root.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_provider() {
        assert_eq!(
            Destination::parse("s3://my-bucket/some/prefix/").unwrap(),
            Destination::S3 {
                bucket: "my-bucket".into(),
                prefix: "some/prefix".into()
            }
        );
        assert_eq!(
            Destination::parse("s3://b").unwrap(),
            Destination::S3 {
                bucket: "b".into(),
                prefix: "".into()
            }
        );
        assert_eq!(
            Destination::parse("gs://b/p").unwrap(),
            Destination::Gcs {
                bucket: "b".into(),
                prefix: "p".into()
            }
        );
        assert_eq!(
            Destination::parse("https://acct.blob.core.windows.net/cont/a/b").unwrap(),
            Destination::Azure {
                account: "acct".into(),
                container: "cont".into(),
                prefix: "a/b".into(),
                emulator: None,
            }
        );
        assert_eq!(
            Destination::parse("http://127.0.0.1:10000/devstoreaccount1/cont/a").unwrap(),
            Destination::Azure {
                account: "devstoreaccount1".into(),
                container: "cont".into(),
                prefix: "a".into(),
                emulator: Some("http://127.0.0.1:10000/devstoreaccount1".into()),
            }
        );
        assert_eq!(
            Destination::parse("file:///var/backups").unwrap(),
            Destination::File {
                root: "/var/backups".into()
            }
        );
        for s in [
            "s3://b/p",
            "gs://b",
            "https://a.blob.core.windows.net/c/p",
            "http://azurite:10000/acct/c/p",
            "file:///x/y",
        ] {
            assert_eq!(Destination::parse(s).unwrap().to_string(), s);
        }
    }

    #[test]
    fn rejects_what_it_cannot_use() {
        for bad in [
            "bucket/prefix",
            "s3://",
            "ftp://x/y",
            "https://example.com/",
            "https://example.com/account",
            "file://relative/dir",
            "file:///a/../b",
            "https://a.blob.core.windows.net/",
        ] {
            let e = Destination::parse(bad).unwrap_err();
            assert_eq!(e.path, bad);
        }
    }
}
