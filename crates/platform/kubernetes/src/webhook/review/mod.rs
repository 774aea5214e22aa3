//! Answering one AdmissionReview (pure: bytes in, status and bytes out).
//!
//! - **mutate**: the object decoded into the model, its defaults applied
//!   (`Defaults::apply_defaults`, as `pgherd validate --show-defaults` shows them) and the
//!   JSON patch from the object as sent to the defaulted one returned; an object the model
//!   cannot decode is allowed unchanged (the validating webhook says what is wrong with it).
//! - **validate**: the same pipeline as `pgherd validate` (schema walk, decoding, defaults,
//!   semantic rules) on the one object; errors refuse it with 422 `Invalid`, one cause per
//!   problem with its field path, message and hint; warnings come back as AdmissionResponse
//!   warnings. References to Secrets, ConfigMaps, ObjectStores and catalogs cannot be checked
//!   from one object and are not reported. On UPDATE the same rules apply to the new object,
//!   and CloudNativePG's rules about a Cluster's change ([`update_errors`]: no older major
//!   than its data, no smaller storage); what the Kubernetes operator does not run yet
//!   ([`crate::not_run`]) is refused too; an object being deleted is always allowed, so its
//!   finalizers can be removed.
//!
//! A body that is not an `admission.k8s.io/v1` AdmissionReview, or a path that names no
//! served kind, is answered with an HTTP error saying so; a review for another kind than the
//! path's is refused with a message naming both.

use super::kinds::{self, Action, Kind};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::response::{StatusCause, StatusDetails};
use kube::core::DynamicObject;
use pgherd_api::defaults::Defaults;
use pgherd_api::diagnostics::Diagnostic;
use pgherd_api::Cluster;
use serde_json::Value;

/// The largest review read (the API server's request limit is 3 MiB; a review carries the
/// object twice on UPDATE).
pub const MAX_BODY: usize = 8 * 1024 * 1024;

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    fn text(status: u16, message: String) -> Answer {
        Answer {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{message}\n").into_bytes(),
        }
    }

    fn review(response: AdmissionResponse) -> Answer {
        let encoded = serde_json::to_value(response.into_review()).map(|mut review| {
            // kube-core writes the patch as a list of byte values (which the API server's
            // decoder also takes); the documented form is a base64 string.
            if let Some(bytes) = review["response"]["patch"].as_array() {
                let raw: Vec<u8> = bytes
                    .iter()
                    .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect();
                use base64::Engine as _;
                review["response"]["patch"] =
                    Value::String(base64::engine::general_purpose::STANDARD.encode(raw));
            }
            review
        });
        match encoded.and_then(|review| serde_json::to_vec(&review)) {
            Ok(body) => Answer {
                status: 200,
                content_type: "application/json",
                body,
            },
            Err(e) => Answer::text(500, format!("cannot encode the AdmissionReview: {e}")),
        }
    }
}

/// Answer a POST of `body` to `path`.
pub fn handle(path: &str, body: &[u8]) -> Answer {
    let Some((action, kind)) = kinds::route(path) else {
        let served: Vec<String> = kinds::KINDS
            .iter()
            .flat_map(|k| [k.path(Action::Mutate), k.path(Action::Validate)])
            .collect();
        return Answer::text(
            404,
            format!(
                "no admission webhook at {path:?}; served paths: {}",
                served.join(", ")
            ),
        );
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Answer::text(
                400,
                format!("the request body is not JSON ({e}); expected an admission.k8s.io/v1 AdmissionReview"),
            )
        }
    };
    if value["apiVersion"] != "admission.k8s.io/v1" || value["kind"] != "AdmissionReview" {
        return Answer::text(
            400,
            format!(
                "expected an admission.k8s.io/v1 AdmissionReview, got apiVersion {} kind {} (the webhook configuration must list admissionReviewVersions: [v1])",
                value["apiVersion"], value["kind"]
            ),
        );
    }
    let review: AdmissionReview<DynamicObject> = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => return Answer::text(400, format!("not a valid AdmissionReview: {e}")),
    };
    let request: AdmissionRequest<DynamicObject> = match review.try_into() {
        Ok(r) => r,
        Err(_) => return Answer::text(400, "the AdmissionReview has no request".to_string()),
    };
    Answer::review(respond(action, kind, &request, &value["request"]))
}

fn respond(
    action: Action,
    kind: &Kind,
    request: &AdmissionRequest<DynamicObject>,
    raw: &Value,
) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    if request.kind.group != kind.group || request.kind.kind != kind.kind {
        return response.deny(format!(
            "this webhook serves {} ({}), not {} ({}): fix the rules of the webhook configuration that sent it here",
            kind.kind, kind.group, request.kind.kind, request.kind.group
        ));
    }
    let Some(object) = raw.get("object").filter(|o| o.is_object()) else {
        return response.deny("the AdmissionReview carries no object");
    };
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        // Written by the operator through the status subresource; never defaulted or
        // validated here.
        map.remove("status");
    }
    match action {
        Action::Mutate => mutate(response, kind, &object),
        Action::Validate => validate(response, kind, request, &object),
    }
}

/// The object as the model writes it, before and after its defaults.
fn defaulted<T>(object: &Value) -> Result<(Value, Value), serde_json::Error>
where
    T: serde::de::DeserializeOwned + serde::Serialize + Defaults,
{
    let mut typed: T = serde_json::from_value(object.clone())?;
    let before = serde_json::to_value(&typed)?;
    typed.apply_defaults();
    Ok((before, serde_json::to_value(&typed)?))
}

fn defaulted_kind(kind: &str, object: &Value) -> Option<(Value, Value)> {
    use pgherd_api::*;
    let result = match kind {
        "Cluster" => defaulted::<Cluster>(object),
        "Backup" => defaulted::<Backup>(object),
        "ScheduledBackup" => defaulted::<ScheduledBackup>(object),
        "Database" => defaulted::<Database>(object),
        "Pooler" => defaulted::<Pooler>(object),
        "Publication" => defaulted::<Publication>(object),
        "Subscription" => defaulted::<Subscription>(object),
        "DatabaseRole" => defaulted::<DatabaseRole>(object),
        "ImageCatalog" => defaulted::<ImageCatalog>(object),
        "ClusterImageCatalog" => defaulted::<ClusterImageCatalog>(object),
        _ => return None,
    };
    result.ok()
}

/// The JSON patch turning `object` into its defaulted form, if it has defaults to fill in.
pub fn defaults_patch(kind: &str, object: &Value) -> Option<json_patch::Patch> {
    let (before, after) = defaulted_kind(kind, object)?;
    let patch = json_patch::diff(&before, &after);
    if patch.0.is_empty() {
        return None;
    }
    // The model's rendering of the object may differ from what was sent (a field it does not
    // know, another number format): the patch must apply to what was sent.
    let mut check = object.clone();
    if json_patch::patch(&mut check, &patch).is_ok() {
        return Some(patch);
    }
    // Else: the spec as the model defaults it, everything else as sent.
    let mut target = object.clone();
    target["spec"] = after.get("spec").cloned().unwrap_or(Value::Null);
    let patch = json_patch::diff(object, &target);
    (!patch.0.is_empty()).then_some(patch)
}

fn mutate(response: AdmissionResponse, kind: &Kind, object: &Value) -> AdmissionResponse {
    let Some(patch) = defaults_patch(kind.kind, object) else {
        return response;
    };
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        Err(e) => response.deny(format!("cannot encode the defaults as a JSON patch: {e}")),
    }
}

/// Every problem `pgherd validate` reports for `object` alone.
pub fn diagnostics(object: &Value) -> Vec<Diagnostic> {
    let text = object.to_string();
    let mut manifests = pgherd_api::manifest::load(&text);
    {
        let mut all: Vec<&mut pgherd_api::manifest::Manifest> = manifests.iter_mut().collect();
        pgherd_api::manifest::validate_all(&mut all);
    }
    manifests
        .into_iter()
        .flat_map(|m| m.diagnostics)
        .filter(|d| !pgherd_api::validate::is_unresolved_reference(d))
        .collect()
}

/// A problem without its path, as a cause's message: `what is wrong (hint: what to do)`.
fn cause_message(d: &Diagnostic) -> String {
    match &d.hint {
        Some(hint) => format!("{} (hint: {hint})", d.message),
        None => d.message.clone(),
    }
}

/// What the Kubernetes operator does not run yet, refused at admission (the operator would
/// refuse to reconcile the Cluster: better said at `kubectl apply`).
fn not_run(kind: &str, object: &Value) -> Vec<Diagnostic> {
    if kind != "Cluster" {
        return Vec::new();
    }
    let Ok(cluster) = serde_json::from_value::<Cluster>(object.clone()) else {
        return Vec::new();
    };
    crate::not_run::cluster_fields(&cluster)
        .into_iter()
        .map(|n| Diagnostic::error(n.field, n.reason()))
        .collect()
}

/// CloudNativePG's rules about a change (its webhook's `validateClusterChanges`) that pgherd
/// checks: no older major than the data (`old.status.pgDataImageInfo`), no smaller
/// `storage.size` / `walStorage.size` / tablespace size (a claim cannot shrink), no
/// tablespace removed.
fn update_errors(kind: &str, old: &Value, new: &Value) -> Vec<Diagnostic> {
    if kind != "Cluster" {
        return Vec::new();
    }
    let (Ok(old), Ok(new)) = (
        serde_json::from_value::<Cluster>(old.clone()),
        serde_json::from_value::<Cluster>(new.clone()),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(major) = new.major_version() {
        let data = old
            .status
            .as_ref()
            .and_then(|s| s.pg_data_image_info.as_ref());
        let field =
            pgherd_controller::major_upgrade::image_field(new.spec.image_catalog_ref.is_some());
        for e in pgherd_controller::major_upgrade::image_change_errors(data, i64::from(major.0)) {
            out.push(Diagnostic::error(field, e));
        }
    }
    // A primary cluster becomes a replica of another only by the distributed topology's
    // demotion (a clean stop and a token the other cluster is promoted with).
    let demoted = pgherd_controller::external::demoted_by_topology(&new);
    if !old.is_replica() && new.is_replica() && !demoted {
        out.push(Diagnostic::error(
            "spec.replica.enabled",
            "a running primary cluster can't become a replica cluster this way (hint: demote it with the distributed topology, replica.primary naming the other cluster and replica.self this one (its name by default), or create a new Cluster with replica.enabled: true that bootstraps from the source)",
        ));
    }
    let mut sizes = vec![
        (
            "spec.storage.size".to_string(),
            old.spec.storage.as_ref().and_then(|s| s.size.clone()),
            new.spec.storage.as_ref().and_then(|s| s.size.clone()),
        ),
        (
            "spec.walStorage.size".to_string(),
            old.spec.wal_storage.as_ref().and_then(|s| s.size.clone()),
            new.spec.wal_storage.as_ref().and_then(|s| s.size.clone()),
        ),
    ];
    // A tablespace cannot go (its objects would lose their files), nor its volume shrink.
    let kept = new.spec.tablespaces.as_deref().unwrap_or_default();
    for before in old.spec.tablespaces.iter().flatten() {
        match kept.iter().position(|t| t.name == before.name) {
            Some(i) => sizes.push((
                format!("spec.tablespaces[{i}].storage.size"),
                before.storage.size.clone(),
                kept[i].storage.size.clone(),
            )),
            None => out.push(Diagnostic::error(
                "spec.tablespaces",
                format!("tablespace {:?} can't be removed (its objects' files are on its volume: keep it in the list)", before.name),
            )),
        }
    }
    for (field, before, after) in sizes {
        let (Some(before), Some(after)) = (before, after) else {
            continue;
        };
        let (b, a) = (Quantity(before.clone()), Quantity(after.clone()));
        if crate::pvc::resize(&b, &a) == crate::pvc::Resize::RefuseShrink {
            out.push(Diagnostic::error(
                &field,
                format!("can't shrink existing storage from {before} to {after} (a claim cannot shrink: keep {before} or more)"),
            ));
        }
    }
    out
}

fn validate(
    response: AdmissionResponse,
    kind: &Kind,
    request: &AdmissionRequest<DynamicObject>,
    object: &Value,
) -> AdmissionResponse {
    if matches!(request.operation, Operation::Update)
        && object
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|t| !t.is_null())
    {
        return response;
    }
    let mut found = diagnostics(object);
    found.extend(not_run(kind.kind, object));
    if matches!(request.operation, Operation::Update) {
        if let Some(old) = request.old_object.as_ref() {
            if let Ok(old) = serde_json::to_value(old) {
                found.extend(update_errors(kind.kind, &old, object));
            }
        }
    }
    let (errors, warnings): (Vec<&Diagnostic>, Vec<&Diagnostic>) =
        found.iter().partition(|d| d.is_error());
    let mut response = response;
    if !warnings.is_empty() {
        response.warnings = Some(
            warnings
                .iter()
                .map(|d| match d.path.as_str() {
                    "" => cause_message(d),
                    path => format!("{path}: {}", cause_message(d)),
                })
                .collect(),
        );
    }
    if errors.is_empty() {
        return response;
    }
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or(&request.name)
        .to_string();
    let listed: Vec<String> = errors.iter().map(|d| d.to_string()).collect();
    let mut response = response.deny(format!(
        "{}.{} {name:?} is invalid: {}",
        kind.kind,
        kind.group,
        listed.join("; ")
    ));
    response.result.code = 422;
    response.result.reason = "Invalid".to_string();
    response.result.details = Some(StatusDetails {
        name,
        group: kind.group.to_string(),
        kind: kind.kind.to_string(),
        causes: errors
            .iter()
            .map(|d| StatusCause {
                reason: "FieldValueInvalid".to_string(),
                message: cause_message(d),
                field: d.path.clone(),
            })
            .collect(),
        uid: String::new(),
        retry_after_seconds: 0,
    });
    response
}

#[cfg(test)]
mod tests;
