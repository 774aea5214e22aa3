//! Authentication by bearer token and RBAC authorization (API reference "Authenticating" and
//! "Using RBAC Authorization"). The admin token (in the kubeconfig) is in `system:masters`.
//! ServiceAccount tokens are derived from a per-state-directory key, so `kube-sim token NS SA`
//! can mint one without talking to the server: user `system:serviceaccount:NS:SA`, groups
//! `system:serviceaccounts`, `system:serviceaccounts:NS`, `system:authenticated`. Requests are
//! allowed when a (Cluster)RoleBinding grants a rule matching verb, API group, resource
//! (with subresource), and resourceNames; discovery and OpenAPI are open to every
//! authenticated user.

use crate::verbs::State;
use serde_json::Value;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

/// Who made a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// Turns bearer tokens into users.
#[derive(Debug)]
pub struct Authenticator {
    key: String,
}

fn random_hex() -> std::io::Result<String> {
    use std::io::Read;
    let mut f = std::fs::File::open("/dev/urandom")?;
    let mut buf = [0u8; 16];
    f.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn digest(key: &str, parts: &[&str]) -> String {
    let mut out = String::new();
    for round in 0..2u8 {
        let mut h = DefaultHasher::new();
        round.hash(&mut h);
        key.hash(&mut h);
        parts.hash(&mut h);
        out.push_str(&format!("{:016x}", h.finish()));
    }
    out
}

impl Authenticator {
    /// Reuse `DIR/token-key` when the state directory has one, so tokens survive restarts.
    pub fn new(state_dir: Option<&Path>) -> std::io::Result<Self> {
        let key = match state_dir.map(|d| d.join("token-key")) {
            Some(p) if p.exists() => std::fs::read_to_string(&p)?.trim().to_string(),
            Some(p) => {
                let k = random_hex()?;
                if let Some(dir) = p.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::write(&p, &k)?;
                k
            }
            None => random_hex()?,
        };
        Ok(Authenticator { key })
    }

    pub fn from_key(key: &str) -> Self {
        Authenticator {
            key: key.to_string(),
        }
    }

    pub fn admin_token(&self) -> String {
        format!("admin.{}", digest(&self.key, &["admin"]))
    }

    /// A token for ServiceAccount `name` in `namespace`.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> String {
        format!(
            "sa.{namespace}.{name}.{}",
            digest(&self.key, &["sa", namespace, name])
        )
    }

    pub fn authenticate(&self, header: Option<&str>) -> Option<User> {
        let token = header?.strip_prefix("Bearer ")?.trim();
        if token == self.admin_token() {
            return Some(User {
                name: "kube-sim-admin".into(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        }
        let rest = token.strip_prefix("sa.")?;
        let mut parts = rest.splitn(3, '.');
        let (ns, name) = (parts.next()?, parts.next()?);
        if self.service_account_token(ns, name) != token {
            return None;
        }
        Some(User {
            name: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }
}

/// One request as RBAC sees it.
#[derive(Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

fn subject_matches(s: &Value, user: &User) -> bool {
    let name = s["name"].as_str().unwrap_or_default();
    match s["kind"].as_str().unwrap_or_default() {
        "User" => name == user.name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            user.name
                == format!(
                    "system:serviceaccount:{}:{name}",
                    s["namespace"].as_str().unwrap_or_default()
                )
        }
        _ => false,
    }
}

fn has(list: &Value, want: &str) -> bool {
    list.as_array()
        .into_iter()
        .flatten()
        .any(|v| v.as_str().is_some_and(|s| s == "*" || s == want))
}

fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let resource = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let names_ok = match rule["resourceNames"].as_array() {
        Some(names) if !names.is_empty() => names.iter().any(|n| n.as_str() == Some(a.name)),
        _ => true,
    };
    has(&rule["verbs"], a.verb)
        && has(&rule["apiGroups"], a.group)
        && has(&rule["resources"], &resource)
        && names_ok
}

fn role_rules(state: &State, role_ref: &Value, namespace: &str) -> (String, Vec<Value>) {
    let name = role_ref["name"].as_str().unwrap_or_default();
    let (label, role) = match role_ref["kind"].as_str() {
        Some("ClusterRole") => (
            format!("ClusterRole/{name}"),
            state
                .store
                .get("rbac.authorization.k8s.io/clusterroles", "", name),
        ),
        _ => (
            format!("Role/{namespace}/{name}"),
            state
                .store
                .get("rbac.authorization.k8s.io/roles", namespace, name),
        ),
    };
    let rules = role
        .and_then(|r| r["rules"].as_array().cloned())
        .unwrap_or_default();
    (label, rules)
}

/// Why a request was allowed: `system:masters`, or the role and the index of its rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Admin,
    /// What every authenticated user may do (`system:basic-user`: reviewing its own access).
    Default,
    Rule {
        role: String,
        index: usize,
    },
}

/// Which grant allows `user` to do `a`, if any.
pub fn authorize(state: &State, user: &User, a: &Attributes) -> Option<Grant> {
    if user.is_admin() {
        return Some(Grant::Admin);
    }
    if a.group == "authorization.k8s.io"
        && a.resource == "selfsubjectaccessreviews"
        && a.verb == "create"
    {
        return Some(Grant::Default);
    }
    let bound = |b: &Value| {
        b["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| subject_matches(s, user))
    };
    let grant = |role_ref: &Value, ns: &str| {
        let (role, rules) = role_rules(state, role_ref, ns);
        rules
            .iter()
            .position(|r| rule_allows(r, a))
            .map(|index| Grant::Rule { role, index })
    };
    for b in state
        .store
        .objects("rbac.authorization.k8s.io/clusterrolebindings")
        .into_iter()
        .flat_map(|o| o.values())
    {
        if bound(b) {
            if let Some(g) = grant(&b["roleRef"], "") {
                return Some(g);
            }
        }
    }
    if a.namespace.is_empty() {
        return None;
    }
    for ((ns, _), b) in state
        .store
        .objects("rbac.authorization.k8s.io/rolebindings")
        .into_iter()
        .flatten()
    {
        if ns == a.namespace && bound(b) {
            if let Some(g) = grant(&b["roleRef"], ns) {
                return Some(g);
            }
        }
    }
    None
}

/// One authorization decision, as recorded for tests that audit a role ("is the operator's
/// ClusterRole sufficient, and which of its rules are never used?").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub user: String,
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub grant: Option<Grant>,
}

impl Decision {
    pub fn new(user: &User, a: &Attributes, grant: Option<Grant>) -> Self {
        Decision {
            user: user.name.clone(),
            verb: a.verb.into(),
            group: a.group.into(),
            resource: a.resource.into(),
            subresource: a.subresource.into(),
            namespace: a.namespace.into(),
            name: a.name.into(),
            grant,
        }
    }
}

/// `SelfSubjectAccessReview` (the requester) and `SubjectAccessReview` (`spec.user`,
/// `spec.groups`): API reference "Authorization: Checking API access". Returns the review
/// with its `status`.
pub fn review(state: &State, requester: &User, kind: &str, mut body: Value) -> Value {
    let user = if kind == "SubjectAccessReview" {
        User {
            name: body["spec"]["user"].as_str().unwrap_or_default().into(),
            groups: body["spec"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g.as_str().map(String::from))
                .collect(),
        }
    } else {
        requester.clone()
    };
    let ra = &body["spec"]["resourceAttributes"];
    let field = |k: &str| ra[k].as_str().unwrap_or_default().to_string();
    let (verb, group, resource, sub, ns, name) = (
        field("verb"),
        field("group"),
        field("resource"),
        field("subresource"),
        field("namespace"),
        field("name"),
    );
    let attrs = Attributes {
        verb: &verb,
        group: &group,
        resource: &resource,
        subresource: &sub,
        namespace: &ns,
        name: &name,
    };
    let allowed = ra.is_object() && authorize(state, &user, &attrs).is_some()
        || body["spec"]["nonResourceAttributes"].is_object();
    body["status"] = serde_json::json!({ "allowed": allowed });
    body
}
