//! Prometheus text exposition (format 0.0.4): metric families with HELP and TYPE lines,
//! escaped label values, samples grouped under their family.
//!
//! Rendered by hand rather than through `prometheus-client`: query results bring label sets
//! only known at run time, cached between scrapes, and `prometheus-client`'s registries want
//! label types fixed at compile time; the format itself is a few lines.

use std::collections::BTreeMap;
use std::fmt::Write;

/// A family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Labels of one sample, in order.
pub type Labels = Vec<(String, String)>;

/// One sample: `<family><suffix>{labels} value` (suffix is `_bucket`, `_sum`, `_count` or empty).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub suffix: &'static str,
    pub labels: Labels,
    pub value: f64,
}

/// A metric family.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub samples: Vec<Sample>,
}

impl Family {
    /// An empty family.
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Self {
        Family {
            name: name.into(),
            help: help.into(),
            kind,
            samples: Vec::new(),
        }
    }

    /// Add a plain sample.
    pub fn push(&mut self, labels: Labels, value: f64) {
        self.samples.push(Sample {
            suffix: "",
            labels,
            value,
        });
    }

    /// With one plain sample.
    pub fn with(mut self, labels: Labels, value: f64) -> Self {
        self.push(labels, value);
        self
    }
}

/// Families keyed by name; samples of the same family from several sources (databases,
/// queries, the collector) are merged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    families: BTreeMap<String, Family>,
}

/// Why a family could not be merged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metric {name} is already exported as a {existing} and cannot also be a {new}; rename one of them (the query's `name` or the column's alias)")]
pub struct KindConflict {
    pub name: String,
    pub existing: &'static str,
    pub new: &'static str,
}

impl Exposition {
    /// Merge a family in; a family of another kind under the same name is refused. Samples
    /// whose series already exists are dropped (the first one wins), so the output never has
    /// duplicate series.
    pub fn add(&mut self, family: Family) -> Result<(), KindConflict> {
        match self.families.get_mut(&family.name) {
            None => {
                let mut family = family;
                let mut seen = Vec::new();
                family.samples.retain(|s| {
                    let key = (s.suffix, s.labels.clone());
                    if seen.contains(&key) {
                        false
                    } else {
                        seen.push(key);
                        true
                    }
                });
                self.families.insert(family.name.clone(), family);
                Ok(())
            }
            Some(existing) if existing.kind != family.kind => Err(KindConflict {
                name: family.name,
                existing: existing.kind.as_str(),
                new: family.kind.as_str(),
            }),
            Some(existing) => {
                for sample in family.samples {
                    let duplicate = existing
                        .samples
                        .iter()
                        .any(|s| s.suffix == sample.suffix && s.labels == sample.labels);
                    if !duplicate {
                        existing.samples.push(sample);
                    }
                }
                Ok(())
            }
        }
    }

    /// The family of that name.
    pub fn family(&self, name: &str) -> Option<&Family> {
        self.families.get(name)
    }

    /// All families, by name.
    pub fn families(&self) -> impl Iterator<Item = &Family> {
        self.families.values()
    }

    /// The text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for family in self.families.values() {
            if family.samples.is_empty() {
                continue;
            }
            // Writing to a String cannot fail.
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(&family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind.as_str());
            for sample in &family.samples {
                out.push_str(&family.name);
                out.push_str(sample.suffix);
                if !sample.labels.is_empty() {
                    out.push('{');
                    for (i, (k, v)) in sample.labels.iter().enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape_label_value(v));
                    }
                    out.push('}');
                }
                out.push(' ');
                out.push_str(&format_value(sample.value));
                out.push('\n');
            }
        }
        out
    }
}

/// The content type of [`Exposition::render`].
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Escape a label value: backslash, double quote and newline.
pub fn escape_label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as the text format spells it.
pub fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value == f64::INFINITY {
        "+Inf".into()
    } else if value == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{value}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_help_type_and_escaped_labels() {
        let mut e = Exposition::default();
        let f = Family::new("cnpg_x_total", "line one\nback\\slash", MetricKind::Counter)
            .with(vec![("a".into(), "q\"uo\\te\nnl".into())], 3.0);
        e.add(f).unwrap();
        e.add(Family::new("cnpg_a", "first", MetricKind::Gauge).with(vec![], f64::NAN))
            .unwrap();
        assert_eq!(
            e.render(),
            "# HELP cnpg_a first\n# TYPE cnpg_a gauge\ncnpg_a NaN\n\
             # HELP cnpg_x_total line one\\nback\\\\slash\n# TYPE cnpg_x_total counter\n\
             cnpg_x_total{a=\"q\\\"uo\\\\te\\nnl\"} 3\n"
        );
    }

    #[test]
    fn merges_families_and_drops_duplicate_series() {
        let mut e = Exposition::default();
        let one = |v: f64| {
            Family::new("m", "h", MetricKind::Gauge).with(vec![("d".into(), "x".into())], v)
        };
        e.add(one(1.0)).unwrap();
        e.add(one(2.0)).unwrap();
        e.add(Family::new("m", "h", MetricKind::Gauge).with(vec![("d".into(), "y".into())], 3.0))
            .unwrap();
        let f = e.family("m").unwrap();
        assert_eq!(f.samples.len(), 2);
        assert_eq!(f.samples[0].value, 1.0);
        let conflict = e
            .add(Family::new("m", "h", MetricKind::Counter).with(vec![], 1.0))
            .unwrap_err();
        assert!(conflict.to_string().contains("rename"), "{conflict}");
    }

    #[test]
    fn values() {
        assert_eq!(format_value(1.5), "1.5");
        assert_eq!(format_value(-1.0), "-1");
        assert_eq!(format_value(f64::INFINITY), "+Inf");
        assert_eq!(format_value(1e300).parse::<f64>().unwrap(), 1e300);
    }
}
