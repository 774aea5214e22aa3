"""Independent (Python) checks of deploy/crds/crds.yaml and of the example/fixture manifests.

Run from the repository root:  python3 -m pytest tests/schema
See tests/schema/README.md.
"""

from __future__ import annotations

import copy
from pathlib import Path

import kubernetes_validate
import pytest

import crdcheck

CRDS = crdcheck.load_crds()
K8S_VERSIONS = crdcheck.k8s_versions_under_test()


def _crd_id(crd: dict) -> str:
    return (crd.get("metadata") or {}).get("name", "?")


def _fmt(errors: list[str]) -> str:
    return "\n  " + "\n  ".join(errors)


# ---------------------------------------------------------------------------------------------
# The committed CRDs
# ---------------------------------------------------------------------------------------------


def test_crd_file_holds_crds():
    assert CRDS, f"no documents in {crdcheck.CRDS_PATH}"
    for crd in CRDS:
        assert crd.get("apiVersion") == "apiextensions.k8s.io/v1", _crd_id(crd)
        assert crd.get("kind") == "CustomResourceDefinition", _crd_id(crd)
    names = [_crd_id(c) for c in CRDS]
    assert len(names) == len(set(names)), f"duplicate CRDs: {names}"
    kinds = {(c["spec"]["group"], c["spec"]["names"]["kind"]) for c in CRDS}
    for expected in [("postgresql.cnpg.io", k) for k in (
        "Cluster", "Backup", "ScheduledBackup", "Pooler", "Database", "Publication", "Subscription",
        "ImageCatalog", "ClusterImageCatalog", "DatabaseRole")]:
        assert expected in kinds, f"{expected} missing from {crdcheck.CRDS_PATH}"


@pytest.mark.parametrize("k8s_version", K8S_VERSIONS)
@pytest.mark.parametrize("crd", CRDS, ids=_crd_id)
def test_crd_matches_official_openapi_schema(crd, k8s_version):
    errors = crdcheck.openapi_errors(crd, k8s_version)
    assert not errors, (f"{_crd_id(crd)} is not a valid apiextensions.k8s.io/v1 CustomResourceDefinition "
                        f"for Kubernetes {k8s_version}:{_fmt(errors)}")


@pytest.mark.parametrize("crd", CRDS, ids=_crd_id)
def test_crd_passes_kubernetes_validate_public_api(crd):
    # cross-check through the package's own entry point (stops at the first error)
    version = kubernetes_validate.latest_version()
    try:
        kubernetes_validate.validate(crd, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        pytest.fail(f"{_crd_id(crd)}: {'.'.join(map(str, e.path))}: {e.message}")


@pytest.mark.parametrize("crd", CRDS, ids=_crd_id)
def test_crd_structural_and_api_server_rules(crd):
    errors = crdcheck.structural_errors(crd)
    assert not errors, f"{_crd_id(crd)} would be rejected or misbehave:{_fmt(errors)}"


def test_schemas_are_offline_and_cover_crds():
    # the bundled schemas are package data: no network is involved
    for version in K8S_VERSIONS:
        schema = crdcheck.official_schema("CustomResourceDefinition", "apiextensions.k8s.io/v1", version)
        assert schema["properties"]["kind"]["enum"] == ["CustomResourceDefinition"]
        assert schema.get("additionalProperties") is False, "strict schemas must reject unknown fields"


# ---------------------------------------------------------------------------------------------
# Fixture and example manifests
# ---------------------------------------------------------------------------------------------

FIXTURES = crdcheck.fixture_files()


def _fixture_id(path) -> str:
    return str(path.relative_to(crdcheck.REPO_ROOT)) if isinstance(path, Path) else str(path)


@pytest.mark.parametrize(
    "path",
    FIXTURES or [pytest.param(None, marks=pytest.mark.skip(reason="no YAML files in tests/fixtures/seeds/ or examples/"))],
    ids=_fixture_id,
)
def test_fixtures_match_crds(path):
    if crdcheck.is_expected_invalid(path):
        pytest.skip("expected-invalid fixture (rejections are covered by the Rust suite)")
    docs = crdcheck.load_yaml_documents(path)
    checked = 0
    problems = []
    for i, doc in enumerate(docs):
        if crdcheck.api_group(doc) not in crdcheck.CNPG_GROUPS:
            continue
        checked += 1
        name = (doc.get("metadata") or {}).get("name")
        for err in crdcheck.validate_manifest(doc):
            problems.append(f"document {i} ({doc.get('kind')} {name}): {err}")
    if not checked:
        pytest.skip("no postgresql.cnpg.io / barmancloud.cnpg.io documents")
    assert not problems, f"{_fixture_id(path)} does not match the CRDs:{_fmt(problems)}"


# ---------------------------------------------------------------------------------------------
# The checker itself: a known-good CRD passes, broken ones fail with the right paths
# ---------------------------------------------------------------------------------------------

ROOT = "spec.versions[0].schema.openAPIV3Schema"


def good_crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.cnpg.io"},
        "spec": {
            "group": "example.cnpg.io",
            "names": {"kind": "Widget", "plural": "widgets", "singular": "widget", "listKind": "WidgetList"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas",
                              "labelSelectorPath": ".status.selector"},
                },
                "additionalPrinterColumns": [
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                    {"name": "Ready", "type": "string",
                     "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                ],
                "schema": {"openAPIV3Schema": {
                    "title": "Widget",
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "spec": {
                            "type": "object",
                            "required": ["size"],
                            "properties": {
                                "replicas": {"type": "integer", "format": "int32", "minimum": 0, "default": 1},
                                "size": {"x-kubernetes-int-or-string": True},
                                "limit": {"x-kubernetes-int-or-string": True, "nullable": True},
                                "mode": {"type": "string", "enum": ["a", "b"], "nullable": True},
                                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                                "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                                "tags": {"type": "array", "items": {"type": "string"},
                                         "x-kubernetes-list-type": "set"},
                                "ports": {
                                    "type": "array",
                                    "x-kubernetes-list-type": "map",
                                    "x-kubernetes-list-map-keys": ["name"],
                                    "items": {"type": "object", "required": ["name"], "properties": {
                                        "name": {"type": "string"}, "port": {"type": "integer"}}},
                                },
                                "choice": {
                                    "type": "object",
                                    "properties": {"x": {"type": "string"}, "y": {"type": "string"}},
                                    "oneOf": [{"required": ["x"]}, {"required": ["y"]}],
                                },
                            },
                        },
                        "status": {
                            "type": "object",
                            "nullable": True,
                            "properties": {
                                "replicas": {"type": "integer"},
                                "selector": {"type": "string"},
                                "conditions": {"type": "array", "items": {"type": "object", "properties": {
                                    "type": {"type": "string"}, "status": {"type": "string"}}}},
                            },
                        },
                    },
                }},
            }],
        },
    }


def schema_of(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def all_errors(crd: dict) -> list[str]:
    return crdcheck.openapi_errors(crd, K8S_VERSIONS[0]) + crdcheck.structural_errors(crd)


def assert_caught(crd: dict, *fragments: str) -> list[str]:
    errors = all_errors(crd)
    assert errors, "the checker accepted a broken CRD"
    for fragment in fragments:
        assert any(fragment in e for e in errors), f"no error mentions {fragment!r}:{_fmt(errors)}"
    return errors


def test_good_crd_passes_every_check():
    errors = all_errors(good_crd())
    assert not errors, _fmt(errors)


def test_catches_node_without_type():
    crd = good_crd()
    del schema_of(crd)["properties"]["spec"]["properties"]["mode"]["type"]
    assert_caught(crd, f"{ROOT}.properties[spec].properties[mode].type: Required value: must not be empty for specified object fields")


def test_catches_array_item_without_type_and_array_without_items():
    crd = good_crd()
    spec = schema_of(crd)["properties"]["spec"]["properties"]
    spec["tags"]["items"] = {"description": "no type"}
    spec["other"] = {"type": "array"}
    assert_caught(crd,
                  f"{ROOT}.properties[spec].properties[tags].items.type: Required value: must not be empty for specified array items",
                  f"{ROOT}.properties[spec].properties[other].items: Required value")


def test_catches_unknown_schema_keyword_deep_inside_items():
    # JSONSchemaProps rejects unknown keys; this one hangs below `items`, which the published
    # OpenAPI types as "anything", so only the per-node pass can see it
    crd = good_crd()
    schema_of(crd)["properties"]["spec"]["properties"]["ports"]["items"]["properties"]["port"]["x-typo"] = 1
    assert_caught(crd, "ports.items.properties.port: Additional properties are not allowed ('x-typo' was unexpected)")


def test_catches_crd_level_openapi_violations():
    crd = good_crd()
    crd["spec"]["versions"][0]["served"] = "yes"
    crd["spec"]["bogus"] = True
    assert_caught(crd, ".spec.versions[0].served: 'yes' is not of type 'boolean'", "'bogus' was unexpected")


def test_catches_properties_with_additional_properties():
    crd = good_crd()
    schema_of(crd)["properties"]["spec"]["properties"]["labels"]["properties"] = {"a": {"type": "string"}}
    assert_caught(crd, f"{ROOT}.properties[spec].properties[labels].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive")


def test_catches_forbidden_keywords_and_nullable_without_type():
    crd = good_crd()
    spec = schema_of(crd)["properties"]["spec"]
    spec["properties"]["ref"] = {"$ref": "#/definitions/x"}
    spec["properties"]["n"] = {"nullable": True}
    spec["properties"]["tags"]["uniqueItems"] = True
    assert_caught(crd,
                  f"{ROOT}.properties[spec].properties[ref].$ref: Forbidden",
                  f"{ROOT}.properties[spec].properties[n].type: Required value",
                  f"{ROOT}.properties[spec].properties[tags].uniqueItems: Forbidden")


def test_catches_int_or_string_with_type():
    crd = good_crd()
    schema_of(crd)["properties"]["spec"]["properties"]["size"]["type"] = "string"
    assert_caught(crd, f"{ROOT}.properties[spec].properties[size].type: Invalid value: 'string': must be empty if x-kubernetes-int-or-string is true")


def test_catches_non_value_validations_inside_junctors():
    crd = good_crd()
    choice = schema_of(crd)["properties"]["spec"]["properties"]["choice"]
    choice["oneOf"][0].update({"type": "object", "description": "x", "properties": {"z": {"type": "string"}}})
    assert_caught(crd,
                  "properties[choice].oneOf[0].type: Forbidden",
                  "properties[choice].oneOf[0].description: Forbidden",
                  "properties[choice].oneOf[0].properties[z].type: Forbidden",
                  # z is only specified inside the junctor
                  "properties[choice].properties[z]: Required value: because it is defined in")


def test_int_or_string_anyof_pattern_is_allowed():
    crd = good_crd()
    schema_of(crd)["properties"]["spec"]["properties"]["size"]["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    assert not all_errors(crd)


def test_catches_metadata_restrictions_at_root():
    crd = good_crd()
    schema_of(crd)["properties"]["metadata"] = {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 10}, "labels": {"type": "object"}}}
    assert_caught(crd, f"{ROOT}.properties[metadata]: Forbidden: must not specify anything other than name and generateName")
    ok = good_crd()
    schema_of(ok)["properties"]["metadata"] = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 10}}}
    assert not all_errors(ok)


def test_catches_invalid_default():
    crd = good_crd()
    schema_of(crd)["properties"]["spec"]["properties"]["replicas"]["default"] = "one"
    schema_of(crd)["properties"]["spec"]["properties"]["labels"]["default"] = {"a": 1}
    assert_caught(crd,
                  f"{ROOT}.properties[spec].properties[replicas].default: Invalid value: 'one' is not of type 'integer'",
                  f"{ROOT}.properties[spec].properties[labels].default.a: Invalid value")


def test_catches_default_with_unknown_fields():
    crd = good_crd()
    schema_of(crd)["properties"]["spec"]["properties"]["choice"]["default"] = {"x": "1", "w": "?"}
    assert_caught(crd, "properties[choice].default: Invalid value: Additional properties are not allowed ('w' was unexpected)")


def test_catches_printer_column_to_missing_field():
    crd = good_crd()
    cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    cols.append({"name": "Phase", "type": "string", "jsonPath": ".status.phase"})
    cols.append({"name": "Deep", "type": "string", "jsonPath": ".status.conditions[*].reason"})
    cols.append({"name": "Owner", "type": "string", "jsonPath": ".metadata.labels.owner"})  # not checked
    errors = assert_caught(crd,
                           "additionalPrinterColumns[3].jsonPath: Invalid value: '.status.phase': no field 'phase' under .status",
                           "additionalPrinterColumns[4].jsonPath: Invalid value: '.status.conditions[*].reason': no field 'reason'")
    assert not any("additionalPrinterColumns[5]" in e for e in errors), _fmt(errors)


def test_catches_printer_column_type_and_format():
    crd = good_crd()
    cols = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    cols[1]["type"] = "boolean"
    cols.append({"name": "X", "type": "text", "format": "money", "jsonPath": "status.replicas"})
    assert_caught(crd,
                  "additionalPrinterColumns[1].type: Invalid value: 'boolean'",
                  "additionalPrinterColumns[3].type: Invalid value: 'text'",
                  "additionalPrinterColumns[3].format: Invalid value: 'money'",
                  "additionalPrinterColumns[3].jsonPath: Invalid value: 'status.replicas': must be a simple json path starting with .")


def test_catches_bad_scale_paths():
    crd = good_crd()
    crd["spec"]["versions"][0]["subresources"]["scale"] = {
        "specReplicasPath": ".status.replicas",  # wrong side
        "statusReplicasPath": ".status.missing",  # no such field
        "labelSelectorPath": ".spec.size",  # not a string field
    }
    assert_caught(crd,
                  "subresources.scale.specReplicasPath: Invalid value: '.status.replicas': should be a json path under .spec",
                  "subresources.scale.statusReplicasPath: Invalid value: '.status.missing': no field 'missing' under .status",
                  "subresources.scale.labelSelectorPath: Invalid value: '.spec.size': the field must be of type string")


def test_catches_root_rules():
    crd = good_crd()
    root = schema_of(crd)
    root["nullable"] = True
    root["additionalProperties"] = {"type": "string"}
    assert_caught(crd,
                  f"{ROOT}.nullable: Forbidden: nullable cannot be true at the root",
                  f"{ROOT}.additionalProperties: Forbidden: must not be used at the root",
                  "at the root of the schema if the status subresource is enabled")


def test_catches_names_and_versions():
    crd = good_crd()
    crd["metadata"]["name"] = "widget.example.cnpg.io"
    crd["spec"]["versions"].append(copy.deepcopy(crd["spec"]["versions"][0]))
    assert_caught(crd,
                  "metadata.name: Invalid value: 'widget.example.cnpg.io': must be spec.names.plural+\".\"+spec.group",
                  "must have exactly one version marked as storage version",
                  "must contain unique version names")


def test_catches_list_type_misuse():
    crd = good_crd()
    spec = schema_of(crd)["properties"]["spec"]["properties"]
    spec["ports"]["x-kubernetes-list-map-keys"] = ["nope"]
    spec["labels"]["x-kubernetes-list-type"] = "set"
    assert_caught(crd,
                  "properties[ports].x-kubernetes-list-map-keys: Invalid value: ['nope']: entries must all be names of item properties",
                  "properties[labels].type: Invalid value: 'object': must be array if x-kubernetes-list-type is specified")


def test_catches_breakage_in_the_real_cluster_crd():
    crd = copy.deepcopy(next(c for c in CRDS if c["spec"]["names"]["kind"] == "Cluster"))
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    name = next(k for k, v in spec["properties"].items() if v.get("type") == "integer")
    del spec["properties"][name]["type"]
    version.setdefault("additionalPrinterColumns", []).append(
        {"name": "Nope", "type": "string", "jsonPath": ".status.doesNotExist"})
    assert_caught(crd,
                  f"{ROOT}.properties[spec].properties[{name}].type: Required value",
                  "jsonPath: Invalid value: '.status.doesNotExist'")


# ---------------------------------------------------------------------------------------------
# validate_manifest
# ---------------------------------------------------------------------------------------------


def widget(**spec) -> dict:
    return {"apiVersion": "example.cnpg.io/v1", "kind": "Widget",
            "metadata": {"name": "w", "labels": {"app": "x"}, "annotations": {"a": "b"}},
            "spec": {"size": "1Gi", **spec}}


def check(doc: dict) -> list[str]:
    return crdcheck.validate_manifest(doc, crds=[good_crd()])


def assert_rejected(doc: dict, *fragments: str) -> None:
    errors = check(doc)
    assert errors, "validate_manifest accepted an invalid manifest"
    for fragment in fragments:
        assert any(fragment in e for e in errors), f"no error mentions {fragment!r}:{_fmt(errors)}"


def test_manifest_valid():
    doc = widget(replicas=3, limit=None, mode=None, labels={"a": "b"}, raw={"any": {"thing": [1]}},
                 tags=["a", "b"], ports=[{"name": "pg", "port": 5432}, {"name": "m", "port": 9187}],
                 choice={"x": "1"})
    doc["status"] = {"replicas": 1, "conditions": [{"type": "Ready", "status": "True"}]}
    assert check(doc) == []
    assert check(widget(size=10)) == []  # int-or-string takes both


def test_manifest_unknown_field():
    assert_rejected(widget(replica=3), ".spec: Additional properties are not allowed ('replica' was unexpected)")
    doc = widget(ports=[{"name": "pg", "prot": 1}])
    assert_rejected(doc, ".spec.ports[0]: Additional properties are not allowed ('prot' was unexpected)")
    doc = widget()
    doc["extra"] = 1
    assert_rejected(doc, ".: Additional properties are not allowed ('extra' was unexpected)")


def test_manifest_wrong_types_and_values():
    assert_rejected(widget(replicas="three"), ".spec.replicas: 'three' is not of type 'integer'")
    assert_rejected(widget(replicas=-1), ".spec.replicas: -1 is less than the minimum of 0")
    assert_rejected(widget(replicas=2 ** 40), ".spec.replicas: 1099511627776 is not a 'int32'")
    assert_rejected(widget(mode="c"), ".spec.mode: 'c' is not one of ['a', 'b', None]")
    assert_rejected(widget(size=[1]), ".spec.size: [1] is not of type 'integer', 'string'")
    assert_rejected(widget(labels={"a": 1}), ".spec.labels.a: 1 is not of type 'string'")
    assert_rejected(widget(tags=["a", "a"]), ".spec.tags: ['a', 'a'] has non-unique elements")
    assert_rejected(widget(ports=[{"name": "pg"}, {"name": "pg"}]), ".spec.ports: Duplicate value")
    assert_rejected(widget(choice={"x": "1", "y": "2"}), ".spec.choice:")
    doc = widget()
    del doc["spec"]["size"]
    assert_rejected(doc, ".spec: 'size' is a required property")


def test_manifest_metadata_is_checked_but_not_closed():
    doc = widget()
    doc["metadata"]["labels"] = {"app": 1}
    assert_rejected(doc, ".metadata.labels.app: 1 is not of type 'string'")
    doc = widget()
    doc["metadata"]["somethingNew"] = True
    assert check(doc) == []


def test_manifest_nulls_and_defaults_like_the_api_server():
    # null on a non-nullable field without default is dropped; a missing field gets its default
    assert check(widget(labels=None)) == []
    doc = widget()
    assert crdcheck.prune_nulls_and_default(doc, schema_of(good_crd()))["spec"]["replicas"] == 1


def test_manifest_api_version_and_kind():
    doc = widget()
    doc["apiVersion"] = "example.cnpg.io/v2"
    assert_rejected(doc, ".apiVersion: Invalid value: 'example.cnpg.io/v2'")
    doc = widget()
    doc["kind"] = "Gadget"
    assert_rejected(doc, ".kind: Invalid value: no CRD")


def test_real_cluster_manifest_checks():
    ok = {"apiVersion": "postgresql.cnpg.io/v1", "kind": "Cluster", "metadata": {"name": "pg"},
          "spec": {"instances": 3, "storage": {"size": "1Gi"}}}
    assert crdcheck.validate_manifest(ok) == []
    bad = copy.deepcopy(ok)
    bad["spec"]["instancez"] = 3
    bad["spec"]["instances"] = "3"
    errors = crdcheck.validate_manifest(bad)
    assert any(".spec: Additional properties are not allowed ('instancez' was unexpected)" in e for e in errors), _fmt(errors)
    assert any(e.startswith(".spec.instances: '3' is not of type 'integer'") for e in errors), _fmt(errors)


def test_yaml_loader_rejects_duplicate_keys_and_keeps_timestamps(tmp_path):
    p = tmp_path / "dup.yaml"
    p.write_text("a: 1\nb: 2\na: 3\n")
    with pytest.raises(crdcheck.DuplicateKeyError):
        crdcheck.load_yaml_documents(p)
    p.write_text("t: 2025-01-15T12:00:00Z\nd: 2025-01-15\n")
    assert crdcheck.load_yaml_documents(p) == [{"t": "2025-01-15T12:00:00Z", "d": "2025-01-15"}]


def test_expected_invalid_detection(tmp_path):
    named = tmp_path / "001-cluster-x.invalid.yaml"
    named.write_text("apiVersion: v1\n")
    headed = tmp_path / "002-cluster-y.yaml"
    headed.write_text("# From seed 002\n# Expect: invalid\napiVersion: v1\n")
    late = tmp_path / "003-cluster-z.yaml"
    late.write_text("apiVersion: v1\n# expect: invalid\n")
    plain = tmp_path / "004-cluster-ok.yaml"
    plain.write_text("# valid\napiVersion: v1\n")
    assert crdcheck.is_expected_invalid(named)
    assert crdcheck.is_expected_invalid(headed)
    assert not crdcheck.is_expected_invalid(late)
    assert not crdcheck.is_expected_invalid(plain)
