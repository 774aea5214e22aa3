//! Input limits, checked before the expensive work (YAML parsing, schema walks, reconciling):
//! the sizes Kubernetes enforces, and a nesting depth that keeps parsing linear.
//!
//! - a request (here: one file) of at most 3 MiB, as kube-apiserver's request body limit;
//! - an object of at most 1.5 MiB serialized, as etcd's default request limit;
//! - annotations of at most 256 KiB in all (keys and values), as the API server's
//!   `TotalAnnotationSizeLimitB`;
//! - at most [`MAX_DEPTH`] levels of nesting. Kubernetes' own JSON reader stops at 10,000, but
//!   the YAML parser gives up at 128 levels after work that grows with the square of the input,
//!   and CloudNativePG's deepest field is about a dozen levels down.

use serde_json::Value;

pub const MAX_FILE_BYTES: usize = 3 * 1024 * 1024;
pub const MAX_OBJECT_BYTES: usize = 1024 * 1024 * 3 / 2;
pub const MAX_ANNOTATION_BYTES: usize = 256 * 1024;
pub const MAX_DEPTH: usize = 100;

/// Why a file is refused before it is parsed, if it is.
pub fn check_text(text: &str) -> Option<String> {
    if text.len() > MAX_FILE_BYTES {
        return Some(format!(
            "the file is larger than {MAX_FILE_BYTES} bytes (3 MiB), the most Kubernetes accepts in one request: split it into several files"
        ));
    }
    deepest_line(text).map(|line| {
        format!(
            "nesting deeper than {MAX_DEPTH} levels at line {line}; no CloudNativePG object nests that deep: check the brackets and indentation"
        )
    })
}

/// Why a parsed object is refused, if it is: (field path, message).
pub fn check_object(doc: &Value) -> Option<(String, String)> {
    if let Some(annotations) = doc
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
    {
        let total: usize = annotations
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or_else(|| v.to_string().len(), str::len))
            .sum();
        if total > MAX_ANNOTATION_BYTES {
            return Some((
                "metadata.annotations".into(),
                format!("the annotations take {total} bytes; Kubernetes allows at most {MAX_ANNOTATION_BYTES} bytes (256 KiB) in all: keep large data in a ConfigMap or Secret"),
            ));
        }
    }
    let size = serde_json::to_vec(doc).map_or(0, |b| b.len());
    (size > MAX_OBJECT_BYTES).then(|| {
        (
            String::new(),
            format!("the object takes {size} bytes; Kubernetes stores at most {MAX_OBJECT_BYTES} bytes (1.5 MiB) per object: keep large data in ConfigMaps or Secrets"),
        )
    })
}

/// The first line (1-based) where YAML nesting goes past [`MAX_DEPTH`]: flow brackets plus
/// block indentation levels plus compact `- ` entries, in one linear pass. Quoted strings,
/// comments and block scalars (`|`, `>`) are skipped. It may count a little more than the
/// parser would (never less for brackets), which the generous limit absorbs.
fn deepest_line(text: &str) -> Option<usize> {
    let mut flow = 0usize;
    let mut indents: Vec<usize> = Vec::new();
    let mut quote: Option<char> = None;
    let mut block_scalar_above: Option<usize> = None;
    for (number, line) in text.lines().enumerate() {
        let indent = line.len() - line.trim_start_matches(' ').len();
        let content = line.trim();
        if let Some(parent) = block_scalar_above {
            if content.is_empty() || indent > parent {
                continue;
            }
            block_scalar_above = None;
        }
        if flow == 0 && quote.is_none() && !content.is_empty() && !content.starts_with('#') {
            while indents.last().is_some_and(|&top| top >= indent) {
                indents.pop();
            }
            indents.push(indent);
        }
        let mut dashes = 0;
        let mut rest = content;
        while flow == 0 && quote.is_none() && (rest.starts_with("- ") || rest == "-") {
            dashes += 1;
            rest = rest.get(1..).unwrap_or_default().trim_start();
        }
        let mut deepest = flow;
        let mut previous = ' ';
        let mut chars = content.chars().peekable();
        while let Some(c) = chars.next() {
            match quote {
                Some('\'') if c == '\'' => {
                    if chars.peek() == Some(&'\'') {
                        chars.next();
                    } else {
                        quote = None;
                    }
                }
                Some('"') if c == '\\' => {
                    chars.next();
                }
                Some('"') if c == '"' => quote = None,
                Some(_) => {}
                None => match c {
                    '#' if previous.is_whitespace() => break,
                    '\'' | '"' if starts_token(previous, flow) => quote = Some(c),
                    '[' | '{' if starts_token(previous, flow) => {
                        flow += 1;
                        deepest = deepest.max(flow);
                    }
                    ']' | '}' if flow > 0 => flow -= 1,
                    _ => {}
                },
            }
            previous = c;
        }
        if indents.len() + dashes + deepest > MAX_DEPTH {
            return Some(number + 1);
        }
        if flow == 0 && quote.is_none() && is_block_scalar_header(content) {
            block_scalar_above = Some(indent);
        }
    }
    None
}

/// Whether a character after `previous` starts a token (a bracket or quote there opens a flow
/// collection or a quoted scalar, not part of a plain scalar such as `a[0]`).
fn starts_token(previous: char, flow: usize) -> bool {
    previous.is_whitespace()
        || matches!(previous, ':' | '-' | '?')
        || (flow > 0 && matches!(previous, ',' | '[' | '{'))
        || (flow == 0 && matches!(previous, '[' | '{'))
}

/// `key: |`, `- >-`, `key: |2+` …: the lines below are text, not structure.
fn is_block_scalar_header(content: &str) -> bool {
    let without_comment = content.split(" #").next().unwrap_or_default().trim_end();
    let Some(last) = without_comment.rsplit([' ', '\t']).next() else {
        return false;
    };
    let mut chars = last.chars();
    matches!(chars.next(), Some('|' | '>'))
        && chars.all(|c| matches!(c, '+' | '-' | '1'..='9'))
        && (without_comment.len() == last.len()
            || without_comment[..without_comment.len() - last.len()]
                .trim_end()
                .ends_with([':', '-']))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_in_linear_time() {
        let text = format!("a: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let message = check_text(&text).unwrap_or_default();
        assert!(message.contains("nesting deeper than 100"), "{message}");
        // Linear: a million brackets are scanned in well under a second even in debug builds.
        let big = "[".repeat(1_000_000);
        assert!(check_text(&big).is_some());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn deep_block_nesting_is_refused() {
        let mut text = String::new();
        for i in 0..150 {
            text.push_str(&" ".repeat(i));
            text.push_str("k:\n");
        }
        assert!(check_text(&text).is_some_and(|m| m.contains("line 101")));
        let dashes = format!("{}x\n", "- ".repeat(150));
        assert!(check_text(&dashes).is_some());
    }

    #[test]
    fn ordinary_manifests_pass_whatever_their_text_holds() {
        let text = r#"
spec:
  postgresql:
    parameters:
      search_path: '"$user", public'
    pg_hba:
      - host all all 10.0.0.0/8 scram-sha-256 # [[[[
  bootstrap:
    initdb:
      postInitSQL:
        - CREATE TABLE a (x int[])
      postInitApplicationSQL: [ "select '[[['", 'it''s [' ]
  description: |
"#;
        let mut text = text.to_string();
        for _ in 0..200 {
            text.push_str("    [[[[[[[[[[ {{{{{{ block scalar text is not structure\n");
        }
        text.push_str("other: a[0\n");
        assert_eq!(check_text(&text), None);
    }

    #[test]
    fn size_limits_name_the_field_and_the_limit() {
        assert!(check_text(&"a".repeat(MAX_FILE_BYTES + 1)).is_some_and(|m| m.contains("3 MiB")));
        let doc = serde_json::json!({"metadata": {"annotations": {"a": "x".repeat(300 * 1024)}}});
        let (path, message) = check_object(&doc).unwrap_or_default();
        assert_eq!(path, "metadata.annotations");
        assert!(message.contains("256 KiB"), "{message}");
        let doc = serde_json::json!({"data": {"a": "x".repeat(2 * 1024 * 1024)}});
        assert!(check_object(&doc).is_some_and(|(_, m)| m.contains("1.5 MiB")));
        assert_eq!(
            check_object(&serde_json::json!({"metadata": {"name": "a"}})),
            None
        );
    }
}
