//! The one protobuf request body kube-sim reads: access reviews, which `kubectl auth can-i`
//! sends only as protobuf. A minimal reader of the protobuf wire format and of the
//! Kubernetes envelope (`k8s\0` + runtime.Unknown), mapped to the JSON the rest of the server
//! uses. Every other protobuf body is refused with 415.

use serde_json::{json, Map, Value};

enum Field<'a> {
    Varint,
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut out = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        out |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(out);
        }
    }
    None
}

fn fields(buf: &[u8]) -> Option<Vec<(u64, Field<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let field = match wire {
            0 => {
                varint(buf, &mut pos)?;
                Field::Varint
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                Field::Bytes(bytes)
            }
            1 => {
                pos += 8;
                continue;
            }
            5 => {
                pos += 4;
                continue;
            }
            _ => return None,
        };
        out.push((number, field));
    }
    Some(out)
}

fn text(b: &[u8]) -> Value {
    json!(String::from_utf8_lossy(b))
}

/// Decodes one nested message.
type Decoder = fn(&[u8]) -> Value;

/// A message as JSON, naming its string fields and nested messages by number.
fn message(
    buf: &[u8],
    strings: &[(u64, &str)],
    messages: &[(u64, &str, Decoder)],
    lists: &[(u64, &str)],
) -> Value {
    let mut m = Map::new();
    for (n, f) in fields(buf).unwrap_or_default() {
        let Field::Bytes(b) = f else { continue };
        if let Some((_, name)) = strings.iter().find(|(k, _)| *k == n) {
            m.insert((*name).into(), text(b));
        } else if let Some((_, name, dec)) = messages.iter().find(|(k, _, _)| *k == n) {
            m.insert((*name).into(), dec(b));
        } else if let Some((_, name)) = lists.iter().find(|(k, _)| *k == n) {
            let list = m.entry((*name).to_string()).or_insert_with(|| json!([]));
            if let Some(a) = list.as_array_mut() {
                a.push(text(b));
            }
        }
    }
    Value::Object(m)
}

fn resource_attributes(b: &[u8]) -> Value {
    let names = [
        (1, "namespace"),
        (2, "verb"),
        (3, "group"),
        (4, "version"),
        (5, "resource"),
        (6, "subresource"),
        (7, "name"),
    ];
    message(b, &names, &[], &[])
}

fn non_resource_attributes(b: &[u8]) -> Value {
    message(b, &[(1, "path"), (2, "verb")], &[], &[])
}

fn review_spec(b: &[u8]) -> Value {
    message(
        b,
        &[(3, "user"), (6, "uid")],
        &[
            (1, "resourceAttributes", resource_attributes),
            (2, "nonResourceAttributes", non_resource_attributes),
        ],
        &[(4, "groups")],
    )
}

/// Decode a protobuf-encoded `SelfSubjectAccessReview` or `SubjectAccessReview`.
pub fn decode_access_review(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let mut kind = String::new();
    let mut raw: &[u8] = &[];
    for (n, f) in fields(unknown)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (k, v) in fields(tm)? {
                    if let (2, Field::Bytes(s)) = (k, v) {
                        kind = String::from_utf8_lossy(s).into_owned();
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    if !matches!(
        kind.as_str(),
        "SelfSubjectAccessReview" | "SubjectAccessReview"
    ) {
        return None;
    }
    let mut spec = json!({});
    for (n, f) in fields(raw)? {
        if let (2, Field::Bytes(s)) = (n, f) {
            spec = review_spec(s);
        }
    }
    Some(json!({ "kind": kind, "apiVersion": "authorization.k8s.io/v1", "spec": spec }))
}
