//! A query's result rows (text, as the simple query protocol returns them) turned into metric
//! families according to the query's column mappings, as CloudNativePG does.

use crate::duration::parse_duration;
use crate::exposition::{Family, Labels, MetricKind, Sample};
use crate::query_config::{ColumnMapping, ColumnUsage, UserQuery};
use crate::version::ServerVersion;

/// A result: column names and rows of optional text values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResultSet {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl ResultSet {
    fn index(&self, column: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == column)
    }
}

/// A number from a text value: numbers, booleans (`t`/`f`), timestamps and dates (ISO, as
/// the exporter's sessions write them) as seconds since the epoch, as CloudNativePG converts
/// them; NULL as NaN.
pub fn to_number(value: Option<&str>) -> Option<f64> {
    let Some(text) = value else {
        return Some(f64::NAN);
    };
    match text.trim() {
        "t" | "true" => Some(1.0),
        "f" | "false" => Some(0.0),
        "NaN" => Some(f64::NAN),
        "Infinity" | "infinity" => Some(f64::INFINITY),
        "-Infinity" | "-infinity" => Some(f64::NEG_INFINITY),
        other => other
            .parse()
            .ok()
            .or_else(|| crate::timestamp::epoch_seconds(other)),
    }
}

fn parse_array(text: &str) -> Option<Vec<f64>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    if inner.trim().is_empty() {
        return Some(Vec::new());
    }
    inner
        .split(',')
        .map(|v| to_number(Some(v.trim().trim_matches('"'))))
        .collect()
}

/// The families of one query's result in one database, and the problems converting it
/// (a column missing, a value that is not a number); the convertible values are kept.
pub fn families(
    query: &UserQuery,
    result: &ResultSet,
    version: ServerVersion,
) -> (Vec<Family>, Vec<String>) {
    let mut problems = Vec::new();
    let columns: Vec<&ColumnMapping> = query
        .metrics
        .iter()
        .filter(|c| c.pg_version.as_ref().is_none_or(|r| r.contains(version)))
        .collect();
    let labels: Vec<&ColumnMapping> = columns
        .iter()
        .copied()
        .filter(|c| c.usage == ColumnUsage::Label)
        .collect();
    let mut out = Vec::new();
    for mapping in &columns {
        let Some(name) = mapping.metric_name(&query.prefix) else {
            continue;
        };
        let kind = match mapping.usage {
            ColumnUsage::Counter => MetricKind::Counter,
            ColumnUsage::Histogram => MetricKind::Histogram,
            _ => MetricKind::Gauge,
        };
        let mut family = Family::new(name, mapping.description.clone(), kind);
        let Some(index) = result.index(&mapping.column) else {
            problems.push(format!(
                "column {:?} is listed in metrics but the query does not return it",
                mapping.column
            ));
            continue;
        };
        for row in &result.rows {
            let mut row_labels: Labels = Vec::new();
            for label in &labels {
                let value = result
                    .index(&label.column)
                    .and_then(|i| row.get(i).cloned().flatten())
                    .unwrap_or_default();
                row_labels.push((label.column.clone(), value));
            }
            let raw = row.get(index).and_then(|v| v.as_deref());
            match convert(mapping, raw, result, row, row_labels) {
                Ok(samples) => family.samples.extend(samples),
                Err(problem) => problems.push(format!("column {:?}: {problem}", mapping.column)),
            }
        }
        out.push(family);
    }
    for label in &labels {
        if result.index(&label.column).is_none() {
            problems.push(format!(
                "label column {:?} is listed in metrics but the query does not return it",
                label.column
            ));
        }
    }
    (out, problems)
}

fn convert(
    mapping: &ColumnMapping,
    raw: Option<&str>,
    result: &ResultSet,
    row: &[Option<String>],
    labels: Labels,
) -> Result<Vec<Sample>, String> {
    let plain = |value: f64| {
        vec![Sample {
            suffix: "",
            labels: labels.clone(),
            value,
        }]
    };
    match mapping.usage {
        ColumnUsage::Counter | ColumnUsage::Gauge => to_number(raw)
            .map(plain)
            .ok_or_else(|| format!("{raw:?} is not a number")),
        ColumnUsage::MappedMetric => raw
            .and_then(|text| mapping.metric_mapping.get(text).copied())
            .map(plain)
            .ok_or_else(|| format!("{raw:?} is not in metric_mapping")),
        ColumnUsage::Duration => match raw {
            None | Some("-1") => Ok(Vec::new()),
            Some(text) => parse_duration(text)
                .map(|d| plain(d.as_secs_f64() * 1000.0))
                .ok_or_else(|| format!("{text:?} is not a duration such as \"1.5s\"")),
        },
        ColumnUsage::Histogram => histogram(mapping, raw, result, row, labels),
        ColumnUsage::Label | ColumnUsage::Discard => Ok(Vec::new()),
    }
}

fn histogram(
    mapping: &ColumnMapping,
    raw: Option<&str>,
    result: &ResultSet,
    row: &[Option<String>],
    labels: Labels,
) -> Result<Vec<Sample>, String> {
    let companion = |suffix: &str| {
        let column = format!("{}{suffix}", mapping.column);
        result
            .index(&column)
            .and_then(|i| row.get(i).cloned().flatten())
            .ok_or_else(|| format!("a HISTOGRAM needs the column {column:?}"))
    };
    let bounds = raw.and_then(parse_array).ok_or_else(|| {
        "the HISTOGRAM column must be an array of bucket upper bounds".to_string()
    })?;
    let counts = parse_array(&companion("_bucket")?)
        .ok_or_else(|| "the _bucket column must be an array of counts".to_string())?;
    let sum = to_number(Some(&companion("_sum")?)).ok_or("the _sum column is not a number")?;
    let count =
        to_number(Some(&companion("_count")?)).ok_or("the _count column is not a number")?;
    let mut samples = Vec::new();
    for (bound, count) in bounds.iter().zip(counts.iter()) {
        let mut l = labels.clone();
        l.push(("le".into(), crate::exposition::format_value(*bound)));
        samples.push(Sample {
            suffix: "_bucket",
            labels: l,
            value: *count,
        });
    }
    if !bounds.iter().any(|b| b.is_infinite()) {
        let mut l = labels.clone();
        l.push(("le".into(), "+Inf".into()));
        samples.push(Sample {
            suffix: "_bucket",
            labels: l,
            value: count,
        });
    }
    samples.push(Sample {
        suffix: "_sum",
        labels: labels.clone(),
        value: sum,
    });
    samples.push(Sample {
        suffix: "_count",
        labels,
        value: count,
    });
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query_config::QuerySet;

    fn rs(columns: &[&str], rows: &[&[Option<&str>]]) -> ResultSet {
        ResultSet {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: rows
                .iter()
                .map(|r| r.iter().map(|v| v.map(str::to_string)).collect())
                .collect(),
        }
    }

    const V15: ServerVersion = ServerVersion {
        major: 15,
        minor: 4,
        patch: 0,
    };

    #[test]
    fn labels_values_and_usages() {
        let set = QuerySet::from_yaml(
            "t",
            r#"
q:
  query: SELECT 1
  metrics:
    - db: {usage: LABEL, description: d}
    - n: {usage: COUNTER, description: n}
    - up: {usage: GAUGE, description: u}
    - mode: {usage: MAPPEDMETRIC, description: m, metric_mapping: {on: 1, off: 0}}
    - took: {usage: DURATION, description: t}
    - junk: {usage: DISCARD}
"#,
        )
        .unwrap();
        let result = rs(
            &["db", "n", "up", "mode", "took", "junk"],
            &[&[
                Some("app"),
                Some("42"),
                Some("t"),
                Some("on"),
                Some("1.5s"),
                Some("x"),
            ]],
        );
        let (families, problems) = families(&set.queries()[0], &result, V15);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<_> = families.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "cnpg_q_n",
                "cnpg_q_up",
                "cnpg_q_mode",
                "cnpg_q_took_milliseconds"
            ]
        );
        let values: Vec<_> = families.iter().map(|f| f.samples[0].value).collect();
        assert_eq!(values, [42.0, 1.0, 1.0, 1500.0]);
        assert_eq!(
            families[0].samples[0].labels,
            vec![("db".to_string(), "app".to_string())]
        );
        assert_eq!(families[0].kind, MetricKind::Counter);
    }

    #[test]
    fn histogram_follows_cnpg_convention() {
        let set = QuerySet::from_yaml(
            "t",
            "h:\n  query: SELECT 1\n  metrics:\n    - lat: {usage: HISTOGRAM, description: d}\n",
        )
        .unwrap();
        let result = rs(
            &["lat", "lat_bucket", "lat_sum", "lat_count"],
            &[&[Some("{0.1,1}"), Some("{2,5}"), Some("3.5"), Some("6")]],
        );
        let (families, problems) = families(&set.queries()[0], &result, V15);
        assert!(problems.is_empty(), "{problems:?}");
        let mut e = crate::exposition::Exposition::default();
        e.add(families[0].clone()).unwrap();
        let text = e.render();
        assert!(text.contains("cnpg_h_lat_bucket{le=\"0.1\"} 2\n"), "{text}");
        assert!(
            text.contains("cnpg_h_lat_bucket{le=\"+Inf\"} 6\n"),
            "{text}"
        );
        assert!(
            text.contains("cnpg_h_lat_sum 3.5\ncnpg_h_lat_count 6\n"),
            "{text}"
        );
    }

    #[test]
    fn bad_values_and_missing_columns_are_problems_not_panics() {
        let set = QuerySet::from_yaml(
            "t",
            "q:\n  query: SELECT 1\n  metrics:\n    - a: {usage: GAUGE}\n    - b: {usage: GAUGE}\n",
        )
        .unwrap();
        let result = rs(&["a"], &[&[Some("abc")], &[Some("2")]]);
        let (families, problems) = families(&set.queries()[0], &result, V15);
        assert_eq!(families.len(), 1);
        assert_eq!(families[0].samples.len(), 1);
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
