//! `pgherd validate FILE...`: every problem of every document, as
//! `file:document: Kind/name: field.path: message`.

use anyhow::Context as _;
use pgherd_api::manifest::{self, Manifest, Object};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The manifest files named by the arguments: files as given, directories expanded to their
/// `.yaml`, `.yml` and `.json` files in name order.
pub(crate) fn expand(args: &[String]) -> anyhow::Result<Vec<String>> {
    let mut files = Vec::new();
    for arg in args {
        let path = Path::new(arg);
        if arg != "-" && path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot list directory {arg}"))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && matches!(
                            p.extension().and_then(|e| e.to_str()),
                            Some("yaml" | "yml" | "json")
                        )
                })
                .collect();
            found.sort();
            files.extend(found.into_iter().map(|p| p.display().to_string()));
        } else {
            files.push(arg.clone());
        }
    }
    Ok(files)
}

/// A manifest file's text (`-` is standard input). Reading stops just past the size limit,
/// which parsing then reports, so a huge file is never read whole.
pub(crate) fn read(file: &str) -> Result<String, String> {
    let mut bytes = Vec::new();
    let limit = u64::try_from(pgherd_api::limits::MAX_FILE_BYTES).unwrap_or(u64::MAX) + 1;
    let result = if file == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut bytes)
            .map(|_| ())
    } else {
        std::fs::File::open(file)
            .and_then(|f| f.take(limit).read_to_end(&mut bytes))
            .map(|_| ())
    };
    result.map_err(|e| format!("cannot read: {e}"))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn display_name(file: &str) -> &str {
    if file == "-" {
        "<stdin>"
    } else {
        file
    }
}

pub fn run(args: &[String], show_defaults: bool) -> anyhow::Result<ExitCode> {
    let files = expand(args)?;
    let mut loaded: Vec<(String, Vec<Manifest>)> = Vec::new();
    let mut unreadable = 0;
    let mut out = std::io::stdout().lock();
    for file in &files {
        match read(file) {
            Ok(text) => loaded.push((display_name(file).to_string(), manifest::load(&text))),
            Err(e) => {
                unreadable += 1;
                writeln!(out, "{}: {e}", display_name(file))?;
            }
        }
    }
    let mut all: Vec<&mut Manifest> = loaded.iter_mut().flat_map(|(_, m)| m.iter_mut()).collect();
    manifest::validate_all(&mut all);

    let (mut errors, mut warnings, mut objects) = (0, 0, 0);
    for (file, manifests) in &loaded {
        for m in manifests {
            objects += usize::from(m.object.is_some());
            for d in &m.diagnostics {
                if d.is_error() {
                    errors += 1;
                } else {
                    warnings += 1;
                }
                writeln!(out, "{file}:{}: {}: {d}", m.index, m.label())?;
            }
            if show_defaults && !m.has_errors() {
                if let Some(yaml) = defaulted_yaml(m.object.as_ref())? {
                    writeln!(
                        out,
                        "---\n# {file}:{}: {} with defaults\n{yaml}",
                        m.index,
                        m.label()
                    )?;
                }
            }
        }
    }
    let failed = errors > 0 || unreadable > 0;
    writeln!(
        out,
        "{}: {} file(s), {objects} object(s), {errors} error(s), {warnings} warning(s)",
        if failed { "invalid" } else { "valid" },
        files.len(),
    )?;
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn defaulted_yaml(object: Option<&Object>) -> anyhow::Result<Option<String>> {
    match object {
        Some(Object::Secret(_) | Object::ConfigMap(_)) | None => Ok(None),
        Some(o) => Ok(Some(serde_yaml_ng::to_string(&o.to_json()?)?)),
    }
}
