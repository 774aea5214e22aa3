//! Request routing (API reference "API Concepts: Resource URIs"): discovery and OpenAPI paths,
//! `/api/v1/...` and `/apis/G/V/...` resource paths (namespaced or not, with subresources),
//! the verb each method means, authentication and authorization, and the JSON responses.

use crate::admission::{self, PendingWrite};
use crate::crd::Validation;
use crate::discovery;
use crate::error::{self, ApiError};
use crate::gc::DeleteOptions;
use crate::rbac::{self, Attributes, User};
use crate::registry::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{ApiServer, Body, Subresource};
use crate::table;
use crate::verbs::{State, Target, WriteOptions};
use crate::{collection, patch, protobuf, scale};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, MutexGuard};

pub async fn handle(server: Arc<ApiServer>, req: Request<Incoming>) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return error_response(&ApiError::bad_request(e.to_string())),
    };
    let routed = match route(&server, parts, bytes) {
        Ok(r) => r,
        Err(e) => return error_response(&e),
    };
    match routed {
        Routed::Done(r) => r,
        Routed::Delegate(handler, target, req) => match handler.call(server, *target, *req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
        Routed::Admit(write) => match admission::admitted_write(&server, *write).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        },
    }
}

/// What routing decided: answered, or handed to a subresource served elsewhere.
enum Routed {
    Done(Response<Body>),
    Delegate(Arc<dyn Subresource>, Box<Target>, Box<Request<Bytes>>),
    /// A write that registered admission plugins must see first.
    Admit(Box<PendingWrite>),
}

pub fn json_response(
    code: u16,
    value: &Value,
    content_type: &str,
    warnings: &[String],
) -> Response<Body> {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("Content-Type", content_type);
    for w in warnings {
        b = b.header("Warning", format!("299 - {:?}", w));
    }
    b.body(Full::new(Bytes::from(value.to_string())).boxed())
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new()).boxed()))
}

pub(crate) fn ok(value: &Value) -> Response<Body> {
    json_response(200, value, "application/json", &[])
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.status(), "application/json", &[]);
    // As the API server's error writer: a suggested retry delay travels as `Retry-After`.
    let retry = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64());
    if let Some(secs) = retry.filter(|s| *s > 0) {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&secs.to_string()) {
            r.headers_mut().insert(hyper::header::RETRY_AFTER, v);
        }
    }
    r
}

pub(crate) type Query = HashMap<String, String>;

fn query_of(parts: &Parts) -> Query {
    form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

pub(crate) fn header<'a>(parts: &'a Parts, name: &str) -> &'a str {
    parts
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

pub(crate) fn lock(server: &ApiServer) -> Result<MutexGuard<'_, State>, ApiError> {
    server
        .state
        .lock()
        .map_err(|_| ApiError::internal("state lock poisoned"))
}

fn route(server: &Arc<ApiServer>, parts: Parts, body: Bytes) -> Result<Routed, ApiError> {
    let path = parts.uri.path().trim_end_matches('/').to_string();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    if matches!(segs.as_slice(), ["healthz"] | ["livez"] | ["readyz"]) {
        return Ok(Routed::Done(Response::new(
            Full::new(Bytes::from_static(b"ok")).boxed(),
        )));
    }
    let user = server
        .auth
        .authenticate(
            parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok()),
        )
        .ok_or_else(ApiError::unauthorized)?;
    let state = lock(server)?;
    let reg = &state.registry;
    let get = parts.method == Method::GET;
    let found = |v: Option<Value>| {
        v.map(|v| ok(&v)).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })
    };
    match segs.as_slice() {
        ["version"] if get => return Ok(Routed::Done(ok(&discovery::version()))),
        ["api"] if get => return Ok(Routed::Done(ok(&discovery::core_versions(&server.address)))),
        ["apis"] if get => return Ok(Routed::Done(ok(&discovery::group_list(reg)))),
        ["api", v] if get => return found(discovery::resource_list(reg, "", v)).map(Routed::Done),
        ["apis", g] if get => return found(discovery::one_group(reg, g)).map(Routed::Done),
        ["apis", g, v] if get => {
            return found(discovery::resource_list(reg, g, v)).map(Routed::Done)
        }
        ["openapi", "v3"] if get => {
            return Ok(Routed::Done(ok(&discovery::openapi_v3_root(
                reg,
                openapi_hash(&state),
            ))))
        }
        ["openapi", "v3", "api", v] if get => {
            return found(discovery::openapi_v3_group_version(reg, "", v)).map(Routed::Done)
        }
        ["openapi", "v3", "apis", g, v] if get => {
            return found(discovery::openapi_v3_group_version(reg, g, v)).map(Routed::Done)
        }
        ["kube-sim", "compact"] if parts.method == Method::POST && user.is_admin() => {
            drop(state);
            server.compact();
            return Ok(Routed::Done(ok(&error::success(json!({})))));
        }
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => {
            return Err(ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            ))
        }
    };
    let namespaced_path = rest.len() >= 3
        && rest[0] == "namespaces"
        && reg
            .find(group, version, rest[2])
            .is_some_and(|t| t.namespaced);
    let (namespace, plural, name, sub) = if namespaced_path {
        (
            Some(rest[1]),
            rest[2],
            rest.get(3).copied(),
            rest.get(4..).map(|s| s.join("/")),
        )
    } else {
        (
            None,
            rest[0],
            rest.get(1).copied(),
            rest.get(2..).map(|s| s.join("/")),
        )
    };
    let rt = reg.find(group, version, plural).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    let target = Target {
        rt: rt.clone(),
        namespace: namespace.unwrap_or_default().to_string(),
        name: name.unwrap_or_default().to_string(),
        subresource: sub.unwrap_or_default(),
    };
    let query = query_of(&parts);
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (&parts.method, name.is_some()) {
        (&Method::GET, true) => "get",
        (&Method::GET, false) if watching => "watch",
        (&Method::GET, false) => "list",
        (&Method::POST, _) if !target.subresource.is_empty() => "create",
        (&Method::POST, false) => "create",
        (&Method::PUT, true) => "update",
        (&Method::PATCH, true) => "patch",
        (&Method::DELETE, true) => "delete",
        (&Method::DELETE, false) => "deletecollection",
        _ => {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource",
            ))
        }
    };
    // `pods/NAME/proxy/PATH`: the name may carry a scheme and a port (`https:NAME:8000`), and
    // the authorization is for `pods/proxy` on the object itself.
    let proxied = target.subresource == "proxy" || target.subresource.starts_with("proxy/");
    let object_name = if proxied {
        crate::kubelet::pod_proxy::parse_target(&target.name)
            .map(|(_, name, _)| name.to_string())
            .unwrap_or_else(|_| target.name.clone())
    } else if matches!(verb, "list" | "watch") {
        // As the API server's request info: a list or watch of one name (`fieldSelector=
        // metadata.name=X`) is authorized as a request for X, so a Role limited to X allows it.
        query
            .get("fieldSelector")
            .and_then(|f| f.strip_prefix("metadata.name="))
            .filter(|n| !n.contains(','))
            .map(str::to_string)
            .unwrap_or_default()
    } else {
        target.name.clone()
    };
    let attrs = Attributes {
        verb,
        group,
        resource: &rt.plural,
        subresource: if proxied {
            "proxy"
        } else {
            &target.subresource
        },
        namespace: &target.namespace,
        name: &object_name,
    };
    let grant = rbac::authorize(&state, &user, &attrs);
    server.record(rbac::Decision::new(&user, &attrs, grant.clone()));
    if grant.is_none() {
        return Err(forbidden(&user, &attrs));
    }
    if rt.group == "authorization.k8s.io" {
        if verb != "create" {
            return Err(ApiError::method_not_allowed(
                "access reviews can only be created",
            ));
        }
        let request = if header(&parts, "content-type")
            .starts_with("application/vnd.kubernetes.protobuf")
        {
            protobuf::decode_object(&body)
                .ok_or_else(|| ApiError::bad_request("cannot decode the protobuf access review"))?
        } else {
            parse_body(&body)?
        };
        let mut review = rbac::review(&state, &user, &rt.kind, request);
        review["apiVersion"] = json!(rt.api_version());
        review["kind"] = json!(rt.kind);
        return Ok(Routed::Done(json_response(
            201,
            &review,
            "application/json",
            &[],
        )));
    }
    if rt.storage_key() == "/serviceaccounts" && target.subresource == "token" && verb == "create" {
        // TokenRequest (API reference "TokenRequest v1 authentication.k8s.io"): the
        // ServiceAccount's token; kube-sim tokens do not expire.
        state.get(&Target {
            subresource: String::new(),
            name: object_name.clone(),
            ..target.clone()
        })?;
        let token = server
            .auth
            .service_account_token(&target.namespace, &target.name);
        let expiry = crate::clock::format_rfc3339(crate::clock::now_secs() + 3600 * 24 * 365);
        let review = json!({
            "kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": target.name, "namespace": target.namespace},
            "spec": {"audiences": ["https://kubernetes.default.svc"]},
            "status": {"token": token, "expirationTimestamp": expiry},
        });
        return Ok(Routed::Done(json_response(
            201,
            &review,
            "application/json",
            &[],
        )));
    }
    if !target.subresource.is_empty() && !matches!(target.subresource.as_str(), "status" | "scale")
    {
        let handler = server
            .subresource(&rt.storage_key(), &target.subresource)
            .ok_or_else(|| {
                ApiError::new(
                    404,
                    "NotFound",
                    "the server could not find the requested resource",
                )
            })?;
        state.get(&Target {
            subresource: String::new(),
            name: object_name.clone(),
            ..target.clone()
        })?;
        drop(state);
        let mut req = Request::builder()
            .method(parts.method.clone())
            .uri(parts.uri.clone());
        for (k, v) in &parts.headers {
            req = req.header(k, v);
        }
        let mut req = req
            .body(body)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        // The connection upgrade (WebSocket for pods/exec) travels in the extensions.
        *req.extensions_mut() = parts.extensions;
        return Ok(Routed::Delegate(handler, Box::new(target), Box::new(req)));
    }
    if target.subresource == "status" && !rt.status
        || target.subresource == "scale" && rt.scale.is_none()
    {
        return Err(ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        ));
    }
    drop(state);
    let admitted_verb = matches!(verb, "create" | "update" | "patch")
        && matches!(target.subresource.as_str(), "" | "status");
    if admitted_verb && server.has_admission() {
        return Ok(Routed::Admit(Box::new(PendingWrite {
            target,
            verb: verb.to_string(),
            opts: write_options(&parts, &query),
            content_type: header(&parts, "content-type").to_string(),
            accept: header(&parts, "accept").to_string(),
            body: json_body(&parts, body)?,
            user,
        })));
    }
    resource_request(server, &parts, &query, &target, verb, body).map(Routed::Done)
}

fn forbidden(user: &User, a: &Attributes) -> ApiError {
    let resource = if a.subresource.is_empty() {
        a.resource.to_string()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    let group = if a.group.is_empty() {
        "\"\"".to_string()
    } else {
        format!("\"{}\"", a.group)
    };
    let what = if a.name.is_empty() {
        String::new()
    } else {
        format!(" \"{}\"", a.name)
    };
    let mut e = ApiError::forbidden(format!(
        "{resource}{what} is forbidden: User \"{}\" cannot {} resource \"{resource}\" in API group {group} {scope}",
        user.name, a.verb
    ));
    e.details = Some(json!({ "name": a.name, "group": a.group, "kind": a.resource }));
    e
}

fn openapi_hash(state: &State) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for t in state.registry.all() {
        t.storage_key().hash(&mut h);
        t.version.hash(&mut h);
    }
    h.finish()
}

pub(crate) fn write_options(parts: &Parts, query: &Query) -> WriteOptions {
    WriteOptions {
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        field_manager: query.get("fieldManager").cloned(),
        force: query.get("force").is_some_and(|f| f == "true"),
        validation: Validation::parse(query.get("fieldValidation").map(String::as_str)),
        user_agent: header(parts, "user-agent").to_string(),
    }
}

pub(crate) fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body)
        .or_else(|_| serde_yaml_ng::from_slice(body))
        .map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON or YAML: {e}"))
        })
}

pub(crate) fn list_selectors(query: &Query) -> Result<(LabelSelector, FieldSelector), ApiError> {
    Ok((
        LabelSelector::parse(
            query
                .get("labelSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
        FieldSelector::parse(
            query
                .get("fieldSelector")
                .map(String::as_str)
                .unwrap_or_default(),
        )?,
    ))
}

pub(crate) fn object_response(
    accept: &str,
    rt: &ResourceType,
    code: u16,
    object: &Value,
    warnings: &[String],
) -> Response<Body> {
    if table::wants_table(accept) && object["kind"] != "Status" {
        let t = table::table(
            rt,
            std::slice::from_ref(object),
            json!({"resourceVersion": object["metadata"]["resourceVersion"]}),
        );
        return json_response(
            code,
            &t,
            "application/json;as=Table;v=v1;g=meta.k8s.io",
            warnings,
        );
    }
    json_response(code, object, "application/json", warnings)
}

/// The request body as JSON bytes (protobuf bodies of the kinds kube-sim reads converted).
pub(crate) fn json_body(parts: &Parts, body: Bytes) -> Result<Bytes, ApiError> {
    if !header(parts, "content-type").starts_with("application/vnd.kubernetes.protobuf") {
        return Ok(body);
    }
    let decoded = protobuf::decode_object(&body).ok_or_else(|| ApiError::unsupported_media(
        "kube-sim decodes protobuf request bodies only for ConfigMap, Secret, Namespace, ServiceAccount and RBAC objects (kubectl's imperative `create <kind>` sends protobuf); send JSON or YAML, e.g. `kubectl create -f` or `kubectl apply`",
    ))?;
    Ok(Bytes::from(decoded.to_string()))
}

fn resource_request(
    server: &Arc<ApiServer>,
    parts: &Parts,
    query: &Query,
    t: &Target,
    verb: &str,
    body: Bytes,
) -> Result<Response<Body>, ApiError> {
    let rt = &t.rt;
    let body = json_body(parts, body)?;
    let opts = write_options(parts, query);
    let scale_sub = t.subresource == "scale";
    match verb {
        "get" => {
            let state = lock(server)?;
            let o = state.get(t)?;
            if scale_sub {
                return Ok(ok(&scale::scale_of(rt, &o)));
            }
            Ok(object_response(header(parts, "accept"), rt, 200, &o, &[]))
        }
        "list" => collection::list(server, parts, query, t),
        "watch" => collection::watch_response(server, parts, query, t),
        "create" => {
            if !t.subresource.is_empty() {
                return Err(ApiError::method_not_allowed(
                    "create is not supported on this subresource",
                ));
            }
            let obj = parse_body(&body)?;
            let mut state = lock(server)?;
            let w = state.create(
                &Target {
                    name: String::new(),
                    ..t.clone()
                },
                obj,
                &opts,
            )?;
            Ok(object_response(
                header(parts, "accept"),
                rt,
                201,
                &w.object,
                &w.warnings,
            ))
        }
        "update" => {
            let obj = parse_body(&body)?;
            let mut state = lock(server)?;
            if scale_sub {
                let o = scale::update_scale(&mut state, t, &obj, &opts)?;
                return Ok(ok(&o));
            }
            let w = state.update(t, obj, &opts)?;
            Ok(object_response(
                header(parts, "accept"),
                rt,
                200,
                &w.object,
                &w.warnings,
            ))
        }
        "patch" => {
            let mut state = lock(server)?;
            let ct = header(parts, "content-type");
            if scale_sub {
                let current = scale::scale_of(rt, &state.get(t)?);
                let mut new = current.clone();
                let p = parse_body(&body)?;
                match ct.split(';').next().unwrap_or_default() {
                    "application/json-patch+json" => patch::json_patch(&mut new, &p)?,
                    _ => patch::merge_patch(&mut new, &p),
                }
                let o = scale::update_scale(&mut state, t, &new, &opts)?;
                return Ok(ok(&o));
            }
            let existed = state
                .store
                .get(&rt.storage_key(), &t.namespace, &t.name)
                .is_some();
            let w = state.patch(t, ct, &body, &opts)?;
            Ok(object_response(
                header(parts, "accept"),
                rt,
                if existed { 200 } else { 201 },
                &w.object,
                &w.warnings,
            ))
        }
        "delete" => {
            let o = parse_body(&body)?;
            let delete = DeleteOptions::parse(&o, query, opts.dry_run);
            let mut state = lock(server)?;
            let out = state.delete(t, &delete)?;
            Ok(object_response(header(parts, "accept"), rt, 200, &out, &[]))
        }
        "deletecollection" => {
            let (labels, fields) = list_selectors(query)?;
            let mut state = lock(server)?;
            let names: Vec<(String, String)> = state
                .store
                .objects(&rt.storage_key())
                .into_iter()
                .flatten()
                .filter(|((ns, _), o)| {
                    (!rt.namespaced || *ns == t.namespace) && labels.matches(o) && fields.matches(o)
                })
                .map(|(k, _)| k.clone())
                .collect();
            for (ns, name) in names {
                let one = Target {
                    namespace: ns,
                    name,
                    ..t.clone()
                };
                state.delete(
                    &one,
                    &DeleteOptions::parse(&Value::Null, query, opts.dry_run),
                )?;
            }
            Ok(ok(&error::success(json!({"kind": rt.plural}))))
        }
        _ => Err(ApiError::method_not_allowed("unsupported verb")),
    }
}
