//! `pgherd manifests`: the operator's release manifest (Namespace, CRDs, RBAC, Deployment).

use std::io::Write;
use std::process::ExitCode;

pub fn run(image: Option<String>) -> anyhow::Result<ExitCode> {
    let image = image.unwrap_or_else(super::operator::default_image);
    let mut out = String::new();
    for object in pgherd_kubernetes::install::release(&image) {
        out.push_str("---\n");
        out.push_str(&serde_yaml_ng::to_string(&object)?);
    }
    std::io::stdout().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
