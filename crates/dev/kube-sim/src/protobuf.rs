//! The protobuf request bodies kube-sim reads. kubectl's typed clients send protobuf, and for
//! some requests only protobuf: `kubectl create configmap|secret|namespace|serviceaccount|
//! role|clusterrole|rolebinding|clusterrolebinding` and `kubectl auth can-i`. A minimal reader
//! of the protobuf wire format and the Kubernetes envelope (`k8s\0` + runtime.Unknown) turns
//! those kinds into the JSON the rest of the server uses (field numbers from the API's
//! `generated.proto` definitions); any other protobuf body is refused with 415.

use base64::Engine;
use serde_json::{json, Map, Value};

enum Field<'a> {
    Varint(u64),
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
            0 => Field::Varint(varint(buf, &mut pos)?),
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

/// How one field of a message is read.
#[derive(Clone, Copy)]
enum Shape {
    Str,
    Bool,
    Msg(&'static [Spec]),
    StrList,
    MsgList(&'static [Spec]),
    /// map<string, string>
    StrMap,
    /// map<string, bytes>, as base64 (how JSON carries bytes)
    BytesMap,
}

type Spec = (u64, &'static str, Shape);

const META: &[Spec] = &[
    (1, "name", Shape::Str),
    (2, "generateName", Shape::Str),
    (3, "namespace", Shape::Str),
    (11, "labels", Shape::StrMap),
    (12, "annotations", Shape::StrMap),
    (14, "finalizers", Shape::StrList),
];
const CONFIG_MAP: &[Spec] = &[
    (1, "metadata", Shape::Msg(META)),
    (2, "data", Shape::StrMap),
    (3, "binaryData", Shape::BytesMap),
    (4, "immutable", Shape::Bool),
];
const SECRET: &[Spec] = &[
    (1, "metadata", Shape::Msg(META)),
    (2, "data", Shape::BytesMap),
    (3, "type", Shape::Str),
    (4, "stringData", Shape::StrMap),
    (5, "immutable", Shape::Bool),
];
const ONLY_META: &[Spec] = &[(1, "metadata", Shape::Msg(META))];
const SERVICE_ACCOUNT: &[Spec] = &[
    (1, "metadata", Shape::Msg(META)),
    (4, "automountServiceAccountToken", Shape::Bool),
];
const RULE: &[Spec] = &[
    (1, "verbs", Shape::StrList),
    (2, "apiGroups", Shape::StrList),
    (3, "resources", Shape::StrList),
    (4, "resourceNames", Shape::StrList),
    (5, "nonResourceURLs", Shape::StrList),
];
const ROLE: &[Spec] = &[
    (1, "metadata", Shape::Msg(META)),
    (2, "rules", Shape::MsgList(RULE)),
];
const SUBJECT: &[Spec] = &[
    (1, "kind", Shape::Str),
    (2, "apiGroup", Shape::Str),
    (3, "name", Shape::Str),
    (4, "namespace", Shape::Str),
];
const ROLE_REF: &[Spec] = &[
    (1, "apiGroup", Shape::Str),
    (2, "kind", Shape::Str),
    (3, "name", Shape::Str),
];
const BINDING: &[Spec] = &[
    (1, "metadata", Shape::Msg(META)),
    (2, "subjects", Shape::MsgList(SUBJECT)),
    (3, "roleRef", Shape::Msg(ROLE_REF)),
];
const RESOURCE_ATTRIBUTES: &[Spec] = &[
    (1, "namespace", Shape::Str),
    (2, "verb", Shape::Str),
    (3, "group", Shape::Str),
    (4, "version", Shape::Str),
    (5, "resource", Shape::Str),
    (6, "subresource", Shape::Str),
    (7, "name", Shape::Str),
];
const NON_RESOURCE_ATTRIBUTES: &[Spec] = &[(1, "path", Shape::Str), (2, "verb", Shape::Str)];
const REVIEW_SPEC: &[Spec] = &[
    (1, "resourceAttributes", Shape::Msg(RESOURCE_ATTRIBUTES)),
    (
        2,
        "nonResourceAttributes",
        Shape::Msg(NON_RESOURCE_ATTRIBUTES),
    ),
    (3, "user", Shape::Str),
    (4, "groups", Shape::StrList),
    (6, "uid", Shape::Str),
];
const REVIEW: &[Spec] = &[
    (1, "metadata", Shape::Msg(META)),
    (2, "spec", Shape::Msg(REVIEW_SPEC)),
];

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn map_entry(b: &[u8]) -> (String, &[u8]) {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, f) in fields(b).unwrap_or_default() {
        match (n, f) {
            (1, Field::Bytes(k)) => key = text(k),
            (2, Field::Bytes(v)) => value = v,
            _ => {}
        }
    }
    (key, value)
}

fn decode(buf: &[u8], specs: &[Spec]) -> Value {
    let mut m = Map::new();
    for (n, f) in fields(buf).unwrap_or_default() {
        let Some((_, name, shape)) = specs.iter().find(|(k, _, _)| *k == n) else {
            continue;
        };
        let name = name.to_string();
        match (*shape, f) {
            // proto2 writes unset strings as "": JSON leaves them out.
            (Shape::Str, Field::Bytes(b)) if !b.is_empty() => {
                m.insert(name, json!(text(b)));
            }
            (Shape::Bool, Field::Varint(v)) => {
                m.insert(name, json!(v != 0));
            }
            (Shape::Msg(inner), Field::Bytes(b)) => {
                m.insert(name, decode(b, inner));
            }
            (Shape::StrList, Field::Bytes(b)) => push(&mut m, name, json!(text(b))),
            (Shape::MsgList(inner), Field::Bytes(b)) => push(&mut m, name, decode(b, inner)),
            (Shape::StrMap, Field::Bytes(b)) => {
                let (k, v) = map_entry(b);
                m.entry(name).or_insert_with(|| json!({}))[k] = json!(text(v));
            }
            (Shape::BytesMap, Field::Bytes(b)) => {
                let (k, v) = map_entry(b);
                let enc = base64::engine::general_purpose::STANDARD.encode(v);
                m.entry(name).or_insert_with(|| json!({}))[k] = json!(enc);
            }
            _ => {}
        }
    }
    Value::Object(m)
}

fn push(m: &mut Map<String, Value>, name: String, v: Value) {
    if let Some(a) = m.entry(name).or_insert_with(|| json!([])).as_array_mut() {
        a.push(v);
    }
}

/// Decode a protobuf body of one of the kinds above into JSON (`None`: not one of them).
pub fn decode_object(body: &[u8]) -> Option<Value> {
    let unknown = body.strip_prefix(b"k8s\0")?;
    let (mut api_version, mut kind) = (String::new(), String::new());
    let mut raw: &[u8] = &[];
    for (n, f) in fields(unknown)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (k, v) in fields(tm)? {
                    match (k, v) {
                        (1, Field::Bytes(s)) => api_version = text(s),
                        (2, Field::Bytes(s)) => kind = text(s),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let specs = match kind.as_str() {
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "Namespace" => ONLY_META,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "SelfSubjectAccessReview" | "SubjectAccessReview" => REVIEW,
        _ => return None,
    };
    let mut obj = decode(raw, specs);
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Some(obj)
}
