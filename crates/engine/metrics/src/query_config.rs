//! Query files in CloudNativePG's format: a YAML map of query name to
//! `{query, metrics: [{column: {usage, description, metric_mapping, name}}], primary | master,
//! runonserver, target_databases, predicate_query, cache_seconds, name}`. Each numeric column
//! becomes the metric `cnpg_<name>_<column>` labelled by the query's LABEL columns.
//!
//! Parsing is strict about what would give wrong metrics (unknown usage, invalid names, a
//! MAPPEDMETRIC without a mapping) and lenient about keys CloudNativePG would ignore: those
//! produce warnings, so a file that works with CloudNativePG works here.

use crate::version::VersionRange;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;

/// The namespace every query metric is prefixed with.
pub const NAMESPACE: &str = "cnpg";

/// The database queries run in when they name no `target_databases`.
pub const DEFAULT_DATABASE: &str = "postgres";

/// How a result column is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnUsage {
    /// Ignored.
    Discard,
    /// A label of every metric of the row.
    Label,
    /// A counter.
    Counter,
    /// A gauge.
    Gauge,
    /// A text value turned into a number by `metric_mapping` (a gauge).
    MappedMetric,
    /// A duration text (`"1.5s"`, `"300ms"`), exported in milliseconds as
    /// `<metric>_milliseconds` (a gauge).
    Duration,
    /// A histogram: the column holds the bucket upper bounds (an array), `<column>_bucket` the
    /// cumulative counts, `<column>_sum` and `<column>_count` the sum and count.
    Histogram,
}

impl ColumnUsage {
    const ALL: &'static str = "DISCARD, LABEL, COUNTER, GAUGE, MAPPEDMETRIC, DURATION, HISTOGRAM";

    fn parse(text: &str) -> Option<Self> {
        Some(match text.trim().to_ascii_uppercase().as_str() {
            "DISCARD" => ColumnUsage::Discard,
            "LABEL" => ColumnUsage::Label,
            "COUNTER" => ColumnUsage::Counter,
            "GAUGE" => ColumnUsage::Gauge,
            "MAPPEDMETRIC" => ColumnUsage::MappedMetric,
            "DURATION" => ColumnUsage::Duration,
            "HISTOGRAM" => ColumnUsage::Histogram,
            _ => return None,
        })
    }
}

/// One column of a query's result.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnMapping {
    /// The result column.
    pub column: String,
    pub usage: ColumnUsage,
    pub description: String,
    /// MAPPEDMETRIC: text value → number.
    pub metric_mapping: BTreeMap<String, f64>,
    /// Metric name (without namespace and query prefix) replacing the column name.
    pub name: Option<String>,
    /// Only on servers in this range.
    pub pg_version: Option<VersionRange>,
}

impl ColumnMapping {
    /// The metric's full name, `cnpg_<query>_<column>` (plus `_milliseconds` for DURATION);
    /// `None` for labels and discarded columns.
    pub fn metric_name(&self, query_prefix: &str) -> Option<String> {
        let base = format!(
            "{NAMESPACE}_{query_prefix}_{}",
            self.name.as_deref().unwrap_or(&self.column)
        );
        match self.usage {
            ColumnUsage::Label | ColumnUsage::Discard => None,
            ColumnUsage::Duration => Some(format!("{base}_milliseconds")),
            _ => Some(base),
        }
    }
}

/// One query.
#[derive(Debug, Clone, PartialEq)]
pub struct UserQuery {
    /// The key in the file.
    pub key: String,
    /// The metric prefix: the `name` override, else the key.
    pub prefix: String,
    pub query: String,
    pub predicate_query: Option<String>,
    pub metrics: Vec<ColumnMapping>,
    /// Only on a primary (`primary: true` or its alias `master: true`).
    pub primary: bool,
    /// Results are cached this long instead of the exporter's TTL.
    pub cache_seconds: Option<u64>,
    pub runonserver: Option<VersionRange>,
    /// Databases to run in (`*`/`?` globs; `"*"` = every database that allows connections).
    /// Empty: the default database.
    pub target_databases: Vec<String>,
    /// Which file the query came from (for errors).
    pub source: String,
}

impl UserQuery {
    /// LABEL columns, in order.
    pub fn label_columns(&self) -> Vec<&str> {
        self.metrics
            .iter()
            .filter(|c| c.usage == ColumnUsage::Label)
            .map(|c| c.column.as_str())
            .collect()
    }
}

/// A problem in a query file that stops it from being used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryConfigError {
    /// The text is not YAML or not a map of query name to query.
    #[error("{source_name}: {message}; a query file is a YAML map of query name to {{query, metrics}} as in CloudNativePG")]
    Syntax {
        source_name: String,
        message: String,
    },
    /// One field of one query is wrong.
    #[error("{source_name}: query {query:?}, {field}: {message}")]
    Field {
        source_name: String,
        query: String,
        field: String,
        message: String,
    },
}

/// A set of queries from the default file and custom files; later definitions replace earlier
/// ones of the same key (with a warning), as CloudNativePG does.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QuerySet {
    queries: Vec<UserQuery>,
    warnings: Vec<String>,
}

/// Something in a query file that is accepted but probably not meant.
pub type Warning = String;

#[derive(Deserialize)]
struct RawQuery {
    query: Option<String>,
    predicate_query: Option<String>,
    metrics: Option<Vec<serde_yaml_ng::Mapping>>,
    master: Option<bool>,
    primary: Option<bool>,
    cache_seconds: Option<u64>,
    runonserver: Option<String>,
    target_databases: Option<Vec<String>>,
    name: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
struct RawColumn {
    usage: Option<String>,
    description: Option<String>,
    metric_mapping: Option<BTreeMap<String, f64>>,
    name: Option<String>,
    pg_version: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, serde_yaml_ng::Value>,
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl QuerySet {
    /// The queries, in file order.
    pub fn queries(&self) -> &[UserQuery] {
        &self.queries
    }

    /// What was accepted but looks unintended (unknown keys, replaced queries).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// Parse one file's text and add its queries; `source_name` names the file in errors
    /// (e.g. `ConfigMap example-monitoring key custom-queries`).
    pub fn add_yaml(&mut self, source_name: &str, text: &str) -> Result<(), QueryConfigError> {
        let syntax = |message: String| QueryConfigError::Syntax {
            source_name: source_name.to_string(),
            message,
        };
        let top: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|e| syntax(format!("not valid YAML: {e}")))?;
        let map = match top {
            serde_yaml_ng::Value::Null => return Ok(()),
            serde_yaml_ng::Value::Mapping(map) => map,
            _ => return Err(syntax("the top level is not a map".into())),
        };
        let mut parsed = Vec::new();
        for (key, value) in map {
            let key = match key {
                serde_yaml_ng::Value::String(s) => s,
                other => return Err(syntax(format!("query name {other:?} is not a string"))),
            };
            parsed.push(parse_query(source_name, &key, value, &mut self.warnings)?);
        }
        for query in parsed {
            if let Some(existing) = self.queries.iter_mut().find(|q| q.key == query.key) {
                self.warnings.push(format!(
                    "{}: query {:?} replaces the one from {}",
                    query.source, query.key, existing.source
                ));
                *existing = query;
            } else {
                self.queries.push(query);
            }
        }
        Ok(())
    }

    /// Parse one file.
    pub fn from_yaml(source_name: &str, text: &str) -> Result<Self, QueryConfigError> {
        let mut set = QuerySet::default();
        set.add_yaml(source_name, text)?;
        Ok(set)
    }
}

fn parse_query(
    source_name: &str,
    key: &str,
    value: serde_yaml_ng::Value,
    warnings: &mut Vec<Warning>,
) -> Result<UserQuery, QueryConfigError> {
    let field_error = |field: &str, message: String| QueryConfigError::Field {
        source_name: source_name.to_string(),
        query: key.to_string(),
        field: field.to_string(),
        message,
    };
    let raw: RawQuery = serde_yaml_ng::from_value(value).map_err(|e| {
        field_error(
            "(query)",
            format!("{e}; expected a map with query, metrics and optional primary, target_databases, runonserver, predicate_query, cache_seconds, name"),
        )
    })?;
    for unknown in raw.other.keys() {
        warnings.push(format!(
            "{source_name}: query {key:?}: unknown key {unknown:?} is ignored"
        ));
    }
    let query = raw
        .query
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| field_error("query", "missing; write the SQL to run".into()))?;
    let prefix = raw.name.clone().unwrap_or_else(|| key.to_string());
    if !is_metric_name(&prefix) {
        let field = if raw.name.is_some() { "name" } else { "(key)" };
        return Err(field_error(
            field,
            format!("{prefix:?} cannot be part of a metric name; use letters, digits and underscores (e.g. {:?})",
                prefix.replace(|c: char| !c.is_ascii_alphanumeric(), "_")),
        ));
    }
    let runonserver = raw
        .runonserver
        .as_deref()
        .filter(|s| !s.trim().is_empty())
        .map(VersionRange::parse)
        .transpose()
        .map_err(|e| field_error("runonserver", e))?;
    let mut metrics = Vec::new();
    let raw_metrics = raw.metrics.unwrap_or_default();
    if raw_metrics.is_empty() {
        return Err(field_error(
            "metrics",
            "missing or empty; list the result columns with their usage".into(),
        ));
    }
    for (index, entry) in raw_metrics.into_iter().enumerate() {
        for (column, spec) in entry {
            let column = match column {
                serde_yaml_ng::Value::String(s) => s,
                other => {
                    return Err(field_error(
                        &format!("metrics[{index}]"),
                        format!("column name {other:?} is not a string"),
                    ))
                }
            };
            let field = format!("metrics[{index}].{column}");
            let spec: RawColumn = serde_yaml_ng::from_value(spec).map_err(|e| {
                field_error(
                    &field,
                    format!("{e}; expected {{usage, description, metric_mapping}}"),
                )
            })?;
            for unknown in spec.other.keys() {
                warnings.push(format!(
                    "{source_name}: query {key:?}, {field}: unknown key {unknown:?} is ignored"
                ));
            }
            let usage_text = spec.usage.unwrap_or_default();
            let usage = ColumnUsage::parse(&usage_text).ok_or_else(|| {
                field_error(
                    &format!("{field}.usage"),
                    format!(
                        "{usage_text:?} is not a usage; use one of {}",
                        ColumnUsage::ALL
                    ),
                )
            })?;
            let metric_mapping = spec.metric_mapping.unwrap_or_default();
            if usage == ColumnUsage::MappedMetric && metric_mapping.is_empty() {
                return Err(field_error(
                    &format!("{field}.metric_mapping"),
                    "a MAPPEDMETRIC needs a metric_mapping from text values to numbers".into(),
                ));
            }
            let name_ok = is_metric_name(spec.name.as_deref().unwrap_or(&column));
            if !name_ok && !matches!(usage, ColumnUsage::Discard) {
                return Err(field_error(
                    &field,
                    "the column (or its name override) cannot be a metric or label name; alias it in the query with letters, digits and underscores".into(),
                ));
            }
            let pg_version = spec
                .pg_version
                .as_deref()
                .filter(|s| !s.trim().is_empty())
                .map(VersionRange::parse)
                .transpose()
                .map_err(|e| field_error(&format!("{field}.pg_version"), e))?;
            metrics.push(ColumnMapping {
                column,
                usage,
                description: spec.description.unwrap_or_default(),
                metric_mapping,
                name: spec.name,
                pg_version,
            });
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for column in &metrics {
        if !seen.insert(column.column.as_str()) {
            return Err(field_error(
                &format!("metrics.{}", column.column),
                "listed twice; list each column once".into(),
            ));
        }
    }
    Ok(UserQuery {
        key: key.to_string(),
        prefix,
        query,
        predicate_query: raw.predicate_query.filter(|q| !q.trim().is_empty()),
        metrics,
        primary: raw.primary.unwrap_or(false) || raw.master.unwrap_or(false),
        cache_seconds: raw.cache_seconds.filter(|s| *s > 0),
        runonserver,
        target_databases: raw.target_databases.unwrap_or_default(),
        source: source_name.to_string(),
    })
}

impl fmt::Display for ColumnUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ColumnUsage::Discard => "DISCARD",
            ColumnUsage::Label => "LABEL",
            ColumnUsage::Counter => "COUNTER",
            ColumnUsage::Gauge => "GAUGE",
            ColumnUsage::MappedMetric => "MAPPEDMETRIC",
            ColumnUsage::Duration => "DURATION",
            ColumnUsage::Histogram => "HISTOGRAM",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
#[path = "query_config_tests.rs"]
mod tests;
