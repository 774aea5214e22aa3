//! What validation reports: one [`Diagnostic`] per problem, with the field path it is about,
//! what is wrong, and what to do about it.

use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The object is accepted, but something deserves attention.
    Warning,
    /// The object is rejected.
    Error,
}

/// One problem with one field of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Field path such as `spec.instances` or `spec.externalClusters[0].name`; empty for the
    /// whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// A field path under construction: `spec` / `instances` → `spec.instances`, index → `[0]`,
/// map keys that are not plain identifiers → `["a.b"]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(String);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(String::new())
    }

    pub fn new(path: &str) -> Self {
        FieldPath(path.to_string())
    }

    /// A named field or map key.
    pub fn key(&self, key: &str) -> Self {
        let plain = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'$');
        if !plain {
            return FieldPath(format!("{}[{key:?}]", self.0));
        }
        if self.0.is_empty() {
            FieldPath(key.to_string())
        } else {
            FieldPath(format!("{}.{key}", self.0))
        }
    }

    /// A list element.
    pub fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `other` is this path or lies under it.
    pub fn covers(&self, other: &str) -> bool {
        other == self.0
            || (other.starts_with(&self.0)
                && matches!(other.as_bytes().get(self.0.len()), Some(b'.') | Some(b'[')))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The closest candidate to `word`, if one is close enough to be a plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_ascii_lowercase();
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::damerau_levenshtein(&lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let p = FieldPath::root()
            .key("spec")
            .key("postgresql")
            .key("parameters");
        assert_eq!(
            p.key("wal_level").as_str(),
            "spec.postgresql.parameters.wal_level"
        );
        assert_eq!(
            p.key("pg_stat_statements.max").as_str(),
            "spec.postgresql.parameters[\"pg_stat_statements.max\"]"
        );
        assert_eq!(
            FieldPath::new("spec").key("plugins").index(2).as_str(),
            "spec.plugins[2]"
        );
        assert!(FieldPath::new("spec.bootstrap").covers("spec.bootstrap.initdb"));
        assert!(FieldPath::new("spec.bootstrap").covers("spec.bootstrap"));
        assert!(!FieldPath::new("spec.bootstrap").covers("spec.bootstrapX"));
    }

    #[test]
    fn suggestions() {
        let fields = ["instances", "imageName", "storage"];
        assert_eq!(did_you_mean("instaces", fields), Some("instances"));
        assert_eq!(did_you_mean("Instances", fields), Some("instances"));
        assert_eq!(did_you_mean("imagename", fields), Some("imageName"));
        assert_eq!(did_you_mean("bananas", fields), None);
    }
}
