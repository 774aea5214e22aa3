//! Splitting manifest text into documents: multi-document YAML (`---`), JSON, and `kind: List`
//! wrappers, with scalars read as YAML 1.1 (as Kubernetes does, see [`crate::yaml11`]). Every
//! document keeps its 1-based position in the file so errors can point at it.

use serde::de::DeserializeSeed;
use serde_json::Value;

/// One document of a manifest file, before any schema is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDocument {
    /// 1-based position in the file (items of a `List` share their list's position).
    pub index: usize,
    /// The parsed value, or why it could not be parsed.
    pub value: Result<Value, String>,
}

/// Parse a manifest file. Never panics; a syntax error becomes a document whose `value` is the
/// error, and parsing stops there (YAML cannot resynchronise after a syntax error).
pub fn parse_documents(text: &str) -> Vec<RawDocument> {
    let mut out = Vec::new();
    if let Some(message) = crate::limits::check_text(text) {
        out.push(RawDocument {
            index: 1,
            value: Err(message),
        });
        return out;
    }
    let trimmed = text.trim_start_matches('\u{feff}');
    for (i, document) in serde_yaml_ng::Deserializer::from_str(trimmed).enumerate() {
        let index = i + 1;
        // YAML 1.1 scalars, as Kubernetes reads them; duplicate keys are an error.
        let parsed = crate::yaml11::Yaml11 { input: trimmed }
            .deserialize(document)
            .map_err(|e| yaml_error_message(&e));
        match parsed {
            Ok(Value::Null) => {} // an empty document, e.g. a trailing `---`
            Ok(value) => expand_list(index, value, &mut out),
            Err(message) => {
                out.push(RawDocument {
                    index,
                    value: Err(message),
                });
                break;
            }
        }
    }
    out
}

fn yaml_error_message(e: &serde_yaml_ng::Error) -> String {
    let text = e.to_string();
    match e.location() {
        Some(loc) if !text.contains("line") => {
            format!("{text} (line {}, column {})", loc.line(), loc.column())
        }
        _ => text,
    }
}

fn expand_list(index: usize, value: Value, out: &mut Vec<RawDocument>) {
    let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
        && value.get("apiVersion").and_then(Value::as_str) == Some("v1");
    match (is_list, value) {
        (true, Value::Object(mut map)) => match map.remove("items") {
            Some(Value::Array(items)) => out.extend(items.into_iter().map(|item| RawDocument {
                index,
                value: Ok(item),
            })),
            Some(Value::Null) | None => {}
            Some(_) => out.push(RawDocument {
                index,
                value: Err("a List's items must be a list of objects".to_string()),
            }),
        },
        (_, value) => out.push(RawDocument {
            index,
            value: Ok(value),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_document_yaml() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].index, 1);
        assert_eq!(docs[1].index, 3);
    }

    #[test]
    fn json_and_lists() {
        let docs =
            parse_documents(r#"{"apiVersion":"v1","kind":"List","items":[{"a":1},{"b":2}]}"#);
        assert_eq!(docs.len(), 2);
        assert!(docs.iter().all(|d| d.index == 1));
    }

    #[test]
    fn syntax_errors_are_reported_not_panicked() {
        let docs = parse_documents("a: 1\n---\nb: [1, 2\n");
        assert!(docs.last().is_some_and(|d| d.value.is_err()), "{docs:?}");
        let docs = parse_documents("a: 1\na: 2\n");
        assert!(docs[0].value.is_err(), "duplicate keys are an error");
    }
}
