//! Container images → local commands and files. kube-sim pulls no images: an image name maps
//! to an entrypoint, a PATH and files bind-mounted into the container from this machine.
//!
//! Built in:
//! - CloudNativePG PostgreSQL images (`ghcr.io/cloudnative-pg/postgresql:MAJOR[.MINOR][-suffix]`,
//!   and any image whose repository ends in `postgresql`): the local PostgreSQL of that major
//!   (Debian's `/usr/lib/postgresql/MAJOR`, or `/opt/postgresql/MAJOR` as `scripts/install.sh`
//!   unpacks it) at `/usr/lib/postgresql/MAJOR`, its `bin` first on the PATH, user `postgres`
//!   (uid 26) with home `/var/lib/postgresql` as in those images;
//! - pgherd's image (`ghcr.io/pgherd/pgherd:*`): `/manager` is the built `pgherd` binary;
//! - PgBouncer images (`ghcr.io/cloudnative-pg/pgbouncer:*`, and any image whose repository
//!   ends in `pgbouncer`): the host's `pgbouncer` (Debian's `/usr/sbin/pgbouncer`) on the PATH,
//!   user `pgbouncer` (uid 998) as in CloudNativePG's image;
//! - shell images (`busybox`, `alpine`, `debian`, `ubuntu`, with or without a registry): the
//!   host's own tools, entrypoint `/bin/sh`-less (the container's command runs as given).
//!
//! `--images FILE` (JSON or YAML) adds rules tried before these: a list of
//! `{image: "name" | "prefix*", entrypoint: [..], cmd: [..], path: "..", files: {"/in/pod": "/on/host"}}`.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// What a container of an image runs with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Image {
    /// The image's ENTRYPOINT (replaced by the container's `command`).
    pub entrypoint: Vec<String>,
    /// The image's CMD (replaced by the container's `args` or `command`).
    pub cmd: Vec<String>,
    /// PATH in the container.
    pub path: String,
    /// Files and directories of the image: (path in the container, path on this machine).
    pub files: Vec<(PathBuf, PathBuf)>,
}

/// One user-supplied rule.
#[derive(Debug, Clone)]
struct Rule {
    pattern: String,
    image: Image,
}

const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The mapping in force.
#[derive(Debug, Clone)]
pub struct Images {
    rules: Vec<Rule>,
    pgherd_bin: PathBuf,
}

impl Images {
    /// The built-in mapping; `pgherd_bin` is what pgherd's image's `/manager` is.
    pub fn new(pgherd_bin: PathBuf) -> Self {
        Images {
            rules: Vec::new(),
            pgherd_bin,
        }
    }

    /// Add the rules of an `--images` file (JSON or YAML), tried before the built-in ones.
    pub fn load(&mut self, file: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let doc: Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| format!("{}: not JSON or YAML: {e}", file.display()))?;
        let list = doc
            .as_array()
            .cloned()
            .or_else(|| doc["images"].as_array().cloned())
            .ok_or_else(|| format!("{}: expected a list of image rules", file.display()))?;
        for r in list {
            let strings = |v: &Value| -> Vec<String> {
                v.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            };
            let pattern = r["image"]
                .as_str()
                .ok_or_else(|| format!("{}: a rule without `image`", file.display()))?;
            let files = r["files"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((PathBuf::from(k), PathBuf::from(v.as_str()?))))
                .collect();
            self.rules.push(Rule {
                pattern: pattern.to_string(),
                image: Image {
                    entrypoint: strings(&r["entrypoint"]),
                    cmd: strings(&r["cmd"]),
                    path: r["path"].as_str().unwrap_or(SYSTEM_PATH).to_string(),
                    files,
                },
            });
        }
        Ok(())
    }

    /// What `image` runs as, or why it cannot be "pulled".
    pub fn resolve(&self, image: &str) -> Result<Image, String> {
        if let Some(r) = self.rules.iter().find(|r| matches(&r.pattern, image)) {
            return Ok(r.image.clone());
        }
        let (repo, tag) = split_reference(image);
        if repo.ends_with("postgresql") {
            return postgres_image(image, tag);
        }
        if repo.ends_with("pgherd/pgherd") || repo == "pgherd" {
            return Ok(Image {
                entrypoint: vec!["/manager".into()],
                cmd: Vec::new(),
                path: SYSTEM_PATH.into(),
                files: vec![("/manager".into(), self.pgherd_bin.clone())],
            });
        }
        let last = repo.rsplit('/').next().unwrap_or(repo);
        if last == "pgbouncer" {
            return pgbouncer_image(image);
        }
        if matches!(last, "busybox" | "alpine" | "debian" | "ubuntu") {
            return Ok(Image {
                entrypoint: Vec::new(),
                cmd: vec!["/bin/sh".into()],
                path: SYSTEM_PATH.into(),
                files: Vec::new(),
            });
        }
        Err(format!(
            "image {image:?} is not mapped to a local command (kube-sim --images FILE)"
        ))
    }
}

/// `prefix*` or an exact name.
fn matches(pattern: &str, image: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => image.starts_with(prefix),
        None => pattern == image,
    }
}

/// (repository, tag) of `registry/repo:tag@digest`.
fn split_reference(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// PgBouncer's image: the host's `pgbouncer` on the PATH (the container's command, pgherd's
/// `pooler run`, starts it).
fn pgbouncer_image(image: &str) -> Result<Image, String> {
    let installed = ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
        .iter()
        .any(|d| Path::new(d).join("pgbouncer").is_file());
    if !installed {
        return Err(format!(
            "image {image:?}: pgbouncer is not installed here (apt-get install pgbouncer)"
        ));
    }
    Ok(Image {
        entrypoint: vec!["pgbouncer".into()],
        cmd: vec!["/etc/pgbouncer/pgbouncer.ini".into()],
        path: SYSTEM_PATH.into(),
        files: Vec::new(),
    })
}

/// Where this machine has PostgreSQL `major` installed (the directory holding `bin`).
pub fn postgres_home(major: u32) -> Option<PathBuf> {
    [
        format!("/usr/lib/postgresql/{major}"),
        format!("/opt/postgresql/{major}"),
        format!("/usr/pgsql-{major}"),
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|d| d.join("bin/postgres").is_file())
}

fn postgres_image(image: &str, tag: &str) -> Result<Image, String> {
    let major: u32 = tag
        .split(['.', '-'])
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("image {image:?}: no PostgreSQL major version in the tag"))?;
    let home = postgres_home(major).ok_or_else(|| {
        format!("image {image:?}: PostgreSQL {major} is not installed here (scripts/install.sh)")
    })?;
    let in_pod = PathBuf::from(format!("/usr/lib/postgresql/{major}"));
    let files = if home == in_pod {
        Vec::new()
    } else {
        vec![(in_pod.clone(), home)]
    };
    Ok(Image {
        entrypoint: Vec::new(),
        cmd: vec!["postgres".into()],
        path: format!("{}/bin:{SYSTEM_PATH}", in_pod.display()),
        files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_repository_and_tag() {
        assert_eq!(
            split_reference("ghcr.io/cloudnative-pg/postgresql:16.4-bookworm"),
            ("ghcr.io/cloudnative-pg/postgresql", "16.4-bookworm")
        );
        assert_eq!(
            split_reference("localhost:5000/busybox"),
            ("localhost:5000/busybox", "latest")
        );
        assert!(matches("ghcr.io/x/*", "ghcr.io/x/y:1"));
        assert!(!matches("busybox", "busybox:1"));
    }

    #[test]
    fn pgherd_and_shell_images_map_to_local_files() {
        let images = Images::new("/bin/true".into());
        let pgherd = images.resolve("ghcr.io/pgherd/pgherd:0.1.0").unwrap();
        assert_eq!(pgherd.files, vec![("/manager".into(), "/bin/true".into())]);
        assert!(images.resolve("busybox:1.36").is_ok());
        assert!(images.resolve("quay.io/nope/nope:1").is_err());
        if Path::new("/usr/sbin/pgbouncer").is_file() {
            let p = images
                .resolve("ghcr.io/cloudnative-pg/pgbouncer:1.24.1")
                .unwrap();
            assert_eq!(p.entrypoint, vec!["pgbouncer".to_string()]);
        }
    }
}
