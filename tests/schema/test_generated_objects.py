"""The objects pgherd's Kubernetes builders generate, checked without the Rust code.

Every document of every golden file in crates/platform/kubernetes/tests/golden/expected/ (the
builders' output for the golden inputs, the seeds' manifests and examples/) is validated

1. against the official Kubernetes OpenAPI schema of its kind, strict flavour (unknown fields
   rejected), as bundled offline by ``kubernetes-validate``, for the Kubernetes versions under
   test (``crdcheck.k8s_versions_under_test()``), both with jsonschema directly (every error,
   with its path) and through ``kubernetes_validate.validate(..., strict=True)``;
2. against what the API server checks beyond the schema: names are DNS-1123 labels, label
   values at most 63 characters, container port names at most 15, a Deployment's selector
   matches its pod template, annotations within 256 KiB.

PodMonitor (monitoring.coreos.com/v1) has no built-in schema: its metadata is checked against
the official ObjectMeta schema and its spec against the fields the builders may emit.

Run from the repository root:  python3 -m pytest tests/schema
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

import crdcheck

GOLDEN_DIR = crdcheck.REPO_ROOT / "crates" / "platform" / "kubernetes" / "tests" / "golden" / "expected"
K8S_VERSIONS = crdcheck.k8s_versions_under_test()
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
POD_MONITOR_SPEC_FIELDS = {"selector", "podMetricsEndpoints"}
POD_MONITOR_ENDPOINT_FIELDS = {"port", "scheme", "tlsConfig", "relabelings", "metricRelabelings"}


def _golden_files() -> list[Path]:
    return sorted(GOLDEN_DIR.glob("*.yaml"))


def _documents() -> list[tuple[str, dict]]:
    out = []
    for path in _golden_files():
        for i, doc in enumerate(crdcheck.load_yaml_documents(path)):
            if doc is None:
                continue
            name = (doc.get("metadata") or {}).get("name", "?")
            out.append((f"{path.stem}[{i}]:{doc.get('kind')}/{name}", doc))
    return out


DOCUMENTS = _documents()
IDS = [d[0] for d in DOCUMENTS]


def _fmt(errors: list[str]) -> str:
    return "\n  " + "\n  ".join(errors)


def test_golden_files_exist_and_cover_every_kind():
    assert _golden_files(), f"no golden files in {GOLDEN_DIR} (run the Rust golden test with PGHERD_BLESS=1)"
    kinds = {doc.get("kind") for _, doc in DOCUMENTS}
    for kind in ("Pod", "PersistentVolumeClaim", "Service", "Secret", "PodDisruptionBudget",
                 "ServiceAccount", "Role", "RoleBinding", "Deployment", "PodMonitor"):
        assert kind in kinds, f"no {kind} in the golden files"


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", [d[1] for d in DOCUMENTS], ids=IDS)
def test_matches_official_openapi_schema(doc, k8s_version):
    if doc.get("apiVersion") == "monitoring.coreos.com/v1":
        pytest.skip("PodMonitor has no built-in schema (checked by test_pod_monitor_shape)")
    schema = crdcheck.official_schema(doc["kind"], doc["apiVersion"], k8s_version)
    validator = jsonschema.Draft202012Validator(schema, registry=crdcheck._registry(k8s_version, True))
    errors = crdcheck._format_errors(validator.iter_errors(doc))
    assert not errors, _fmt(errors)


@pytest.mark.parametrize("doc", [d[1] for d in DOCUMENTS], ids=IDS)
def test_passes_kubernetes_validate_strict(doc):
    if doc.get("apiVersion") == "monitoring.coreos.com/v1":
        pytest.skip("PodMonitor has no built-in schema")
    for version in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(doc, f"{version}.0", strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"Kubernetes {version}: {e}")


def _label_errors(labels: dict | None, where: str) -> list[str]:
    errors = []
    for key, value in (labels or {}).items():
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.match(value):
            errors.append(f"{where}.labels[{key}]: invalid label value {value!r}")
    return errors


def _pod_spec_errors(spec: dict, where: str) -> list[str]:
    errors = []
    for kind in ("initContainers", "containers"):
        for c in spec.get(kind) or []:
            for p in c.get("ports") or []:
                name = p.get("name")
                if name is not None and (len(name) > 15 or not DNS1123_LABEL.match(name)):
                    errors.append(f"{where}.{kind}[{c['name']}].ports: invalid port name {name!r}")
    for v in spec.get("volumes") or []:
        if not DNS1123_LABEL.match(v["name"]):
            errors.append(f"{where}.volumes: invalid volume name {v['name']!r}")
    hostname = spec.get("hostname")
    if hostname is not None and not DNS1123_LABEL.match(hostname):
        errors.append(f"{where}.hostname: not a DNS-1123 label: {hostname!r}")
    return errors


@pytest.mark.parametrize("doc", [d[1] for d in DOCUMENTS], ids=IDS)
def test_api_server_semantics(doc):
    meta = doc.get("metadata") or {}
    errors = []
    name = meta.get("name", "")
    if not DNS1123_LABEL.match(name) or len(name) > 63:
        errors.append(f"metadata.name: not a DNS-1123 label of at most 63 characters: {name!r}")
    errors += _label_errors(meta.get("labels"), "metadata")
    size = len(json.dumps(meta.get("annotations") or {}))
    if size > 256 * 1024:
        errors.append(f"metadata.annotations: {size} bytes, over 256 KiB")
    for ref in meta.get("ownerReferences") or []:
        if not (ref.get("controller") and ref.get("blockOwnerDeletion")):
            errors.append(f"metadata.ownerReferences: not a blocking controller reference: {ref}")
    if not meta.get("ownerReferences"):
        errors.append("metadata.ownerReferences: missing")
    kind = doc.get("kind")
    if kind == "Pod":
        errors += _pod_spec_errors(doc["spec"], "spec")
    if kind == "Deployment":
        template = doc["spec"]["template"]
        errors += _label_errors(template["metadata"].get("labels"), "spec.template.metadata")
        errors += _pod_spec_errors(template["spec"], "spec.template.spec")
        selector = doc["spec"]["selector"].get("matchLabels") or {}
        labels = template["metadata"].get("labels") or {}
        for k, v in selector.items():
            if labels.get(k) != v:
                errors.append(f"spec.selector.matchLabels[{k}]: not matched by the pod template's labels")
    if kind == "Secret":
        size = sum(len(v) for v in (doc.get("data") or {}).values())
        if size > 1024 * 1024:
            errors.append(f"data: {size} bytes, over 1 MiB")
    assert not errors, _fmt(errors)


POD_MONITORS = [d for d in DOCUMENTS if d[1].get("kind") == "PodMonitor"]


@pytest.mark.parametrize("doc", [d[1] for d in POD_MONITORS], ids=[d[0] for d in POD_MONITORS])
def test_pod_monitor_shape(doc):
    version = K8S_VERSIONS[-1]
    meta_schema = {"$ref": f"{crdcheck._DEFS_ID}#/$defs/{crdcheck.OBJECT_META}"}
    validator = jsonschema.Draft202012Validator(meta_schema, registry=crdcheck._registry(version, True))
    errors = crdcheck._format_errors(validator.iter_errors(doc["metadata"]), ".metadata")
    assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}
    assert set(doc["spec"]) <= POD_MONITOR_SPEC_FIELDS, doc["spec"]
    assert doc["spec"]["selector"]["matchLabels"]
    for endpoint in doc["spec"]["podMetricsEndpoints"]:
        assert set(endpoint) <= POD_MONITOR_ENDPOINT_FIELDS, endpoint
        assert endpoint["port"] == "metrics"
    assert not errors, _fmt(errors)


def test_checker_rejects_a_broken_object():
    """The schema check is not vacuous: a string port and an unknown field are refused."""
    doc = next(d for _, d in DOCUMENTS if d.get("kind") == "Service")
    broken = json.loads(json.dumps(doc))
    broken["spec"]["ports"][0]["port"] = "5432"
    broken["spec"]["selectorr"] = {}
    version = K8S_VERSIONS[0]
    schema = crdcheck.official_schema("Service", "v1", version)
    validator = jsonschema.Draft202012Validator(schema, registry=crdcheck._registry(version, True))
    errors = crdcheck._format_errors(validator.iter_errors(broken))
    assert any("port" in e and "integer" in e for e in errors), errors
    assert any("selectorr" in e for e in errors), errors


RELEASE = crdcheck.REPO_ROOT / "deploy" / "pgherd.yaml"
RELEASE_DOCS = [
    d for d in crdcheck.load_yaml_documents(RELEASE)
    if d is not None and d.get("kind") != "CustomResourceDefinition"
]


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("doc", RELEASE_DOCS, ids=[f"{d['kind']}/{d['metadata']['name']}" for d in RELEASE_DOCS])
def test_release_manifest_matches_official_openapi_schema(doc, k8s_version):
    """deploy/pgherd.yaml (`pgherd manifests`) besides its CRDs (checked by test_crds)."""
    schema = crdcheck.official_schema(doc["kind"], doc["apiVersion"], k8s_version)
    validator = jsonschema.Draft202012Validator(schema, registry=crdcheck._registry(k8s_version, True))
    errors = crdcheck._format_errors(validator.iter_errors(doc))
    assert not errors, _fmt(errors)
    if doc["kind"] == "Deployment":
        template = doc["spec"]["template"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()


def test_release_webhooks_reach_the_operator():
    """The webhook Service selects the operator's pods and targets their webhook port; both
    configurations call it at CloudNativePG's paths for CloudNativePG's kinds (and pgherd's
    other validated kinds), fail closed and have no side effects."""
    by_kind = {}
    for d in RELEASE_DOCS:
        by_kind.setdefault(d["kind"], []).append(d)
    for kind in ("Service", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        assert kind in by_kind, f"no {kind} in deploy/pgherd.yaml"
    deployment = by_kind["Deployment"][0]
    service = next(s for s in by_kind["Service"] if s["metadata"]["name"] == "cnpg-webhook-service")
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    (port,) = service["spec"]["ports"]
    assert port["port"] == 443
    container_ports = {p.get("name"): p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports") or []}
    assert container_ports.get(port["targetPort"]) == 9443, container_ports
    expected = {
        "MutatingWebhookConfiguration": {"cluster", "backup", "scheduledbackup", "database"},
        "ValidatingWebhookConfiguration": {"cluster", "backup", "scheduledbackup", "database", "pooler"},
    }
    for kind, prefix in (("MutatingWebhookConfiguration", "mutate"), ("ValidatingWebhookConfiguration", "validate")):
        (config,) = by_kind[kind]
        seen = set()
        for hook in config["webhooks"]:
            ref = hook["clientConfig"]["service"]
            assert (ref["name"], ref["namespace"], ref.get("port", 443)) == (
                "cnpg-webhook-service", service["metadata"]["namespace"], 443)
            assert "caBundle" not in hook["clientConfig"], "the operator patches the CA in"
            assert hook["failurePolicy"] == "Fail" and hook["sideEffects"] == "None"
            assert hook["admissionReviewVersions"] == ["v1"]
            (rule,) = hook["rules"]
            assert rule["apiGroups"] == ["postgresql.cnpg.io"] and rule["apiVersions"] == ["v1"]
            assert sorted(rule["operations"]) == ["CREATE", "UPDATE"]
            (resource,) = rule["resources"]
            singular = ref["path"].rsplit("-", 1)[1]
            assert ref["path"] == f"/{prefix}-postgresql-cnpg-io-v1-{singular}"
            assert resource.startswith(singular), (resource, ref["path"])
            seen.add(singular)
        assert expected[kind] <= seen, (kind, seen)
