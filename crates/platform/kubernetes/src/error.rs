//! What can stop a builder. Every message names the object it was built for.

/// Why an object could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The owner lacks metadata every generated object needs (an object read from the API
    /// server always has it).
    #[error(
        "{kind} {name:?} has no metadata.{field}; objects read from the API server always have one"
    )]
    MissingMetadata {
        kind: &'static str,
        name: String,
        field: &'static str,
    },
    /// A generated name or label value would break one of Kubernetes' length or syntax rules.
    #[error("{kind} {owner:?}: generated {what} {value:?} is {len} characters, over Kubernetes' limit of {limit}; shorten the {kind} name (or the name it is derived from)")]
    TooLong {
        kind: &'static str,
        owner: String,
        what: String,
        value: String,
        len: usize,
        limit: usize,
    },
    /// A generated name or label value has characters Kubernetes refuses.
    #[error("{kind} {owner:?}: generated {what} {value:?} is not valid: {rule}")]
    Malformed {
        kind: &'static str,
        owner: String,
        what: String,
        value: String,
        rule: &'static str,
    },
    /// The spec lacks something the object needs (validation should have refused it).
    #[error("{kind} {owner:?}: {message}")]
    Spec {
        kind: &'static str,
        owner: String,
        message: String,
    },
    /// A user-supplied fragment could not be merged into the generated object.
    #[error("{kind} {owner:?}: cannot merge {what}: {source}")]
    Merge {
        kind: &'static str,
        owner: String,
        what: &'static str,
        source: serde_json::Error,
    },
}

/// Result of a builder.
pub type Result<T> = std::result::Result<T, BuildError>;
