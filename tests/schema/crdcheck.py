"""Independent (non-Rust) checks of the CustomResourceDefinitions in deploy/crds/crds.yaml.

Three layers, each usable on its own:

1. ``openapi_errors(crd, k8s_version)``: the CRD document against the official Kubernetes
   OpenAPI schema of ``apiextensions.k8s.io/v1`` ``CustomResourceDefinition``, as bundled
   (offline) by the ``kubernetes-validate`` package in its "strict" flavour (unknown fields
   rejected).  The bundled schema types ``items`` / ``additionalProperties`` of a
   ``JSONSchemaProps`` as "anything", so every schema node reached through them is validated
   again against ``JSONSchemaProps`` itself: together that covers every node of every
   ``openAPIV3Schema``.

2. ``structural_errors(crd)``: what the API server enforces on top of the OpenAPI shape
   (k8s.io/apiextensions-apiserver: ``pkg/apis/apiextensions/validation`` and
   ``pkg/apiserver/schema``): names, storage versions, structural-schema rules, forbidden
   keywords, x-kubernetes-* extension rules, defaults, printer columns and the scale
   subresource.  Printer-column and scale paths are additionally resolved against the schema
   (the API server only checks their syntax; a path to a missing field shows ``<none>`` forever
   or breaks ``/scale``).  Errors use the API server's field-path notation, e.g.
   ``spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[instances].type``.

3. ``validate_manifest(doc)``: a custom-resource manifest against its CRD, the way the API server
   does on create with ``fieldValidation=Strict``: unknown fields are errors, nulls of
   non-nullable fields are dropped, defaults applied, then the ``openAPIV3Schema`` (converted to
   JSON Schema 2020-12) is checked with ``jsonschema`` and ``metadata`` against the official
   ``ObjectMeta`` schema (not closed: metadata is validated by Kubernetes separately).
"""

from __future__ import annotations

import base64
import binascii
import copy
import functools
import json
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Iterator

import jsonschema
import yaml
from referencing import Registry, Resource

REPO_ROOT = Path(__file__).resolve().parents[2]
CRDS_PATH = REPO_ROOT / "deploy" / "crds" / "crds.yaml"
FIXTURE_DIRS = (
    REPO_ROOT / "tests" / "fixtures" / "seeds",
    REPO_ROOT / "tests" / "fixtures" / "kinds",
    REPO_ROOT / "examples",
)
CNPG_GROUPS = ("postgresql.cnpg.io", "barmancloud.cnpg.io")

# The Kubernetes version pgherd's Rust types are generated for (k8s-openapi feature `v1_33`).
TARGET_K8S_VERSION = "1.33"

# ---------------------------------------------------------------------------------------------
# YAML
# ---------------------------------------------------------------------------------------------


class DuplicateKeyError(yaml.constructor.ConstructorError):
    pass


class KubeYamlLoader(yaml.SafeLoader):
    """SafeLoader closer to what kubectl/the API server accept.

    * duplicate mapping keys are an error (Kubernetes' strict decoding rejects them, PyYAML would
      silently keep the last one);
    * unquoted timestamps stay strings (sigs.k8s.io/yaml converts YAML to JSON, where a timestamp
      is just a string; PyYAML would make a ``datetime``).
    """


def _construct_mapping_no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, yaml.Node] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue
        if key in seen:
            raise DuplicateKeyError(
                "while constructing a mapping", node.start_mark,
                f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1})",
                key_node.start_mark,
            )
        seen[key] = key_node
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


KubeYamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping_no_duplicates)
KubeYamlLoader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)


def load_yaml_documents(path: Path | str) -> list[Any]:
    """All non-empty documents of a (multi-document) YAML file."""
    with open(path, encoding="utf-8") as f:
        return [d for d in yaml.load_all(f, Loader=KubeYamlLoader) if d is not None]


@functools.lru_cache(maxsize=None)
def _load_crds_cached(path: str) -> tuple[str, ...]:
    # cached as JSON text so every caller gets its own mutable copy
    return tuple(json.dumps(d) for d in load_yaml_documents(path))


def load_crds(path: Path | str = CRDS_PATH) -> list[dict]:
    return [json.loads(s) for s in _load_crds_cached(str(path))]


def crd_index(crds: Iterable[dict]) -> dict[tuple[str, str], dict]:
    """(group, kind) -> CRD."""
    out = {}
    for crd in crds:
        spec = crd.get("spec") or {}
        out[(spec.get("group"), (spec.get("names") or {}).get("kind"))] = crd
    return out


# ---------------------------------------------------------------------------------------------
# Field paths in the API server's notation
# ---------------------------------------------------------------------------------------------


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def key(path: str, k: str) -> str:
    return f"{path}[{k}]"


def index(path: str, i: int) -> str:
    return f"{path}[{i}]"


def json_path(parts: Iterable[Any]) -> str:
    """jsonschema's error.absolute_path as `.spec.foo[0].bar` (`.` for the document root)."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out or "."


# ---------------------------------------------------------------------------------------------
# 1. Official OpenAPI schema (kubernetes-validate, offline)
# ---------------------------------------------------------------------------------------------

_SCHEMA_PKG = "kubernetes_validate"
_SCHEMA_DIR = "kubernetes-json-schema"
_DEFS_ID = "https://kubernetes.io/api/_definitions.json"
JSON_SCHEMA_PROPS = "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _schema_root():
    return resources.files(_SCHEMA_PKG).joinpath(_SCHEMA_DIR)


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v))


@functools.lru_cache(maxsize=None)
def bundled_k8s_versions() -> tuple[str, ...]:
    """Kubernetes versions (`1.33`) whose schemas kubernetes-validate ships, oldest first."""
    found = set()
    for entry in _schema_root().iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local-strict", entry.name)
        if m:
            found.add(f"{m.group(1)}.{m.group(2)}")
    return tuple(sorted(found, key=_version_key))


def k8s_versions_under_test() -> list[str]:
    """$PGHERD_K8S_VERSIONS (comma separated, `latest` allowed) or TARGET_K8S_VERSION + latest."""
    latest = bundled_k8s_versions()[-1]
    raw = os.environ.get("PGHERD_K8S_VERSIONS")
    wanted = [v.strip() for v in raw.split(",") if v.strip()] if raw else [TARGET_K8S_VERSION, latest]
    out = []
    for v in wanted:
        v = latest if v == "latest" else v.lstrip("v")
        v = ".".join(v.split(".")[:2])
        if v not in out:
            out.append(v)
    return out


def _schema_dir(k8s_version: str, strict: bool):
    mm = ".".join(k8s_version.lstrip("v").split(".")[:2])
    if mm not in bundled_k8s_versions():
        raise LookupError(f"kubernetes-validate bundles no schemas for Kubernetes {mm} "
                          f"(it has {', '.join(bundled_k8s_versions())})")
    return _schema_root().joinpath(f"v{mm}.0-local" + ("-strict" if strict else ""))


@functools.lru_cache(maxsize=None)
def _schema_json(k8s_version: str, strict: bool, filename: str) -> dict:
    return json.loads(_schema_dir(k8s_version, strict).joinpath(filename).read_text(encoding="utf-8"))


@functools.lru_cache(maxsize=None)
def _registry(k8s_version: str, strict: bool) -> Registry:
    defs = _schema_json(k8s_version, strict, "_definitions.json")
    return Resource.from_contents(defs) @ Registry()


def official_schema(kind: str, api_version: str, k8s_version: str, strict: bool = True) -> dict:
    """The bundled JSON schema of a built-in kind, e.g. ('CustomResourceDefinition', 'apiextensions.k8s.io/v1')."""
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return _schema_json(k8s_version, strict, f"{kind.lower()}-{group_version}.json")


def _format_errors(errors: Iterable[jsonschema.ValidationError], prefix: str = "") -> list[str]:
    out = []
    for e in sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        out.append(f"{prefix}{json_path(e.absolute_path)}: {e.message}")
    return out


def openapi_errors(crd: dict, k8s_version: str) -> list[str]:
    """Every violation of the official CustomResourceDefinition OpenAPI schema (strict: unknown
    fields are errors), including inside every nested openAPIV3Schema node."""
    registry = _registry(k8s_version, True)
    schema = official_schema("CustomResourceDefinition", "apiextensions.k8s.io/v1", k8s_version)
    validator = jsonschema.Draft202012Validator(schema, registry=registry)
    errors = _format_errors(validator.iter_errors(crd))

    # JSONSchemaProps.items / .additionalProperties are "JSONSchemaPropsOrArray/OrBool", which the
    # published OpenAPI leaves untyped: validate what hangs below them against JSONSchemaProps.
    props_validator = jsonschema.Draft202012Validator(
        {"$ref": f"{_DEFS_ID}#/$defs/{JSON_SCHEMA_PROPS}"}, registry=registry)
    for vi, version in enumerate((crd.get("spec") or {}).get("versions") or []):
        if not isinstance(version, dict):
            continue
        root = ((version.get("schema") or {}).get("openAPIV3Schema"))
        if not isinstance(root, dict):
            continue
        base = f".spec.versions[{vi}].schema.openAPIV3Schema"
        for sub_path, node in _untyped_subschemas(root, ""):
            for e in props_validator.iter_errors(node):
                errors.append(f"{base}{sub_path}{json_path(e.absolute_path)}: {e.message}")
    return errors


def _untyped_subschemas(node: Any, path: str) -> Iterator[tuple[str, dict]]:
    """Schema nodes hanging below `items` / `additionalProperties` (recursively)."""
    if not isinstance(node, dict):
        return
    for k, sub in _subschemas(node, path):
        if isinstance(sub, dict) and (k.endswith(".items") or k.endswith(".additionalProperties")
                                      or re.search(r"\.items\[\d+\]$", k)):
            yield k, sub
        yield from _untyped_subschemas(sub, k)


def _subschemas(node: dict, path: str) -> Iterator[tuple[str, Any]]:
    """(jsonpath-ish path, subschema) of every direct subschema of an OpenAPI v3 schema node."""
    for name in ("properties", "patternProperties", "definitions"):
        if isinstance(node.get(name), dict):
            for k, v in node[name].items():
                yield f"{path}.{name}.{k}", v
    for name in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(name), list):
            for i, v in enumerate(node[name]):
                yield f"{path}.{name}[{i}]", v
    for name in ("not", "additionalItems", "additionalProperties"):
        if isinstance(node.get(name), dict):
            yield f"{path}.{name}", node[name]
    items = node.get("items")
    if isinstance(items, dict):
        yield f"{path}.items", items
    elif isinstance(items, list):
        for i, v in enumerate(items):
            yield f"{path}.items[{i}]", v
    if isinstance(node.get("dependencies"), dict):
        for k, v in node["dependencies"].items():
            if isinstance(v, dict):
                yield f"{path}.dependencies.{k}", v


# ---------------------------------------------------------------------------------------------
# 2. API-server rules beyond the OpenAPI shape
# ---------------------------------------------------------------------------------------------

OPENAPI_V3_TYPES = ("string", "number", "integer", "boolean", "array", "object")
PRINTER_COLUMN_TYPES = ("integer", "number", "string", "boolean", "date")
PRINTER_COLUMN_FORMATS = ("int32", "int64", "float", "double", "byte", "date", "date-time", "password")
META_FIELDS = ("metadata", "kind", "apiVersion")
# allowedFieldsAtRootSchema (JSON names) when the status subresource is enabled
ALLOWED_AT_ROOT_WITH_STATUS = {
    "description", "type", "format", "title", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems",
    "multipleOf", "required", "items", "properties", "externalDocs", "example",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-validations",
}
# keys a node inside allOf/anyOf/oneOf/not must not set (NestedValueValidation's forbidden parts)
FORBIDDEN_IN_JUNCTORS = (
    "type", "additionalProperties", "default", "title", "description", "nullable", "externalDocs",
    "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type",
    "x-kubernetes-map-type", "x-kubernetes-validations",
)
_FORBIDDEN_IF_TRUE = ("nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
                      "x-kubernetes-int-or-string")
_FORBIDDEN_IF_PRESENT = ("additionalProperties", "default", "externalDocs", "x-kubernetes-list-type",
                         "x-kubernetes-map-type")
_JUNCTOR_HINT = " (only value validations may appear inside allOf/anyOf/oneOf/not)"
INT_OR_STRING_ANYOF = [{"type": "integer"}, {"type": "string"}]

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = re.compile(rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def _is_dns1123_subdomain(s: Any) -> bool:
    return isinstance(s, str) and len(s) <= 253 and bool(_DNS1123_SUBDOMAIN.fullmatch(s))


def _is_dns1035_label(s: Any) -> bool:
    return isinstance(s, str) and len(s) <= 63 and bool(_DNS1035_LABEL.fullmatch(s))


def structural_errors(crd: dict) -> list[str]:
    """Every rule the API server enforces on a v1 CRD that the OpenAPI shape does not express,
    plus schema resolution of printer-column and scale paths."""
    errs: list[str] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    name = (crd.get("metadata") or {}).get("name")

    # --- metadata / names / group / scope (ValidateCustomResourceDefinition) ---
    if not _is_dns1123_subdomain(name):
        errs.append(f"metadata.name: Invalid value: {name!r}: must be a DNS-1123 subdomain")
    if name != f"{names.get('plural')}.{group}":
        errs.append(f"metadata.name: Invalid value: {name!r}: must be spec.names.plural+\".\"+spec.group")
    if not group:
        errs.append("spec.group: Required value")
    elif not _is_dns1123_subdomain(group):
        errs.append(f"spec.group: Invalid value: {group!r}: must be a DNS-1123 subdomain")
    elif "." not in group:
        errs.append(f"spec.group: Invalid value: {group!r}: should be a domain with at least one dot")
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.append(f"spec.scope: Unsupported value: {spec.get('scope')!r}: supported values: \"Cluster\", \"Namespaced\"")
    if group and (group.endswith(".k8s.io") or group.endswith(".kubernetes.io") or group in ("k8s.io", "kubernetes.io")):
        if "api-approved.kubernetes.io" not in ((crd.get("metadata") or {}).get("annotations") or {}):
            errs.append("metadata.annotations[api-approved.kubernetes.io]: Required value: protected group")
    for field in ("plural", "kind"):
        if not names.get(field):
            errs.append(f"spec.names.{field}: Required value")
    for field in ("plural", "singular"):
        if names.get(field) and not _is_dns1035_label(names[field]):
            errs.append(f"spec.names.{field}: Invalid value: {names[field]!r}: must be a DNS-1035 label")
    for field in ("kind", "listKind"):
        if names.get(field) and not _is_dns1035_label(str(names[field]).lower()):
            errs.append(f"spec.names.{field}: Invalid value: {names[field]!r}: may have mixed case, but should otherwise match a DNS-1035 label")
    if names.get("kind") and names.get("kind") == names.get("listKind"):
        errs.append("spec.names.listKind: Invalid value: kind and listKind may not be the same")
    for field in ("shortNames", "categories"):
        for i, v in enumerate(names.get(field) or []):
            if not _is_dns1035_label(v):
                errs.append(f"spec.names.{field}[{i}]: Invalid value: {v!r}: must be a DNS-1035 label")
    if spec.get("preserveUnknownFields") is True:
        errs.append("spec.preserveUnknownFields: Invalid value: true: cannot set to true, set x-preserve-unknown-fields to true in spec.versions[*].schema instead")

    # --- versions ---
    versions = spec.get("versions") or []
    if not versions:
        errs.append("spec.versions: Required value")
    seen_versions = set()
    storage = 0
    for vi, version in enumerate(versions):
        vpath = f"spec.versions[{vi}]"
        if not isinstance(version, dict):
            errs.append(f"{vpath}: Invalid value: must be an object")
            continue
        vname = version.get("name")
        if vname in seen_versions:
            errs.append(f"spec.versions: Invalid value: must contain unique version names ({vname!r} repeated)")
        seen_versions.add(vname)
        if not _is_dns1035_label(vname):
            errs.append(f"{vpath}.name: Invalid value: {vname!r}: must be a DNS-1035 label")
        if version.get("storage"):
            storage += 1
        if version.get("deprecationWarning") is not None and not version.get("deprecated"):
            errs.append(f"{vpath}.deprecationWarning: Invalid value: can only be set for deprecated versions")
        errs.extend(version_errors(version, vpath))
    if versions and storage != 1:
        errs.append(f"spec.versions: Invalid value: must have exactly one version marked as storage version (found {storage})")
    return errs


def version_errors(version: dict, vpath: str) -> list[str]:
    errs: list[str] = []
    subresources = version.get("subresources") or {}
    status_enabled = isinstance(subresources, dict) and subresources.get("status") is not None
    root = (version.get("schema") or {}).get("openAPIV3Schema")
    spath = f"{vpath}.schema.openAPIV3Schema"
    if not isinstance(root, dict):
        errs.append(f"{spath}: Required value: schemas are required")
        root = None
    else:
        if status_enabled:
            extra = sorted(k for k in root if k not in ALLOWED_AT_ROOT_WITH_STATUS)
            if extra:
                errs.append(f"{spath}: Invalid value: only {sorted(ALLOWED_AT_ROOT_WITH_STATUS)} are allowed "
                            f"at the root of the schema if the status subresource is enabled, found {extra}")
            if "type" in root and root["type"] != "object":
                errs.append(f"{spath}.type: Invalid value: {root['type']!r}: only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled")
        if root.get("nullable") is True:
            errs.append(f"{spath}.nullable: Forbidden: nullable cannot be true at the root")
        errs.extend(openapi_schema_rules(root, spath, is_root=True))
        errs.extend(structural_schema_rules(root, spath))
        errs.extend(default_rules(root, spath))

    # --- subresources.scale ---
    scale = subresources.get("scale") if isinstance(subresources, dict) else None
    if scale is not None:
        sc = f"{vpath}.subresources.scale"
        checks = (("specReplicasPath", (".spec.",), "integer", True),
                  ("statusReplicasPath", (".status.",), "integer", True),
                  ("labelSelectorPath", (".spec.", ".status."), "string", False))
        for field, prefixes, want_type, required in checks:
            p = scale.get(field)
            if not p:
                if required:
                    errs.append(f"{sc}.{field}: Required value")
                continue
            if not isinstance(p, str) or not p.startswith("."):
                errs.append(f"{sc}.{field}: Invalid value: {p!r}: must be a simple json path starting with .")
                continue
            if not p.startswith(prefixes):
                where = " or ".join(x.rstrip(".") for x in prefixes)
                errs.append(f"{sc}.{field}: Invalid value: {p!r}: should be a json path under {where}")
                continue
            if "[" in p:
                errs.append(f"{sc}.{field}: Invalid value: {p!r}: only JSON paths without the array notation are allowed")
                continue
            if root is None:
                continue
            node, problem = resolve_path(root, p)
            if problem:
                errs.append(f"{sc}.{field}: Invalid value: {p!r}: {problem}")
            elif node is not None and not _node_admits(node, want_type):
                errs.append(f"{sc}.{field}: Invalid value: {p!r}: the field must be of type {want_type}, "
                            f"the schema says {_describe_type(node)}")

    # --- additionalPrinterColumns ---
    for ci, col in enumerate(version.get("additionalPrinterColumns") or []):
        cp = f"{vpath}.additionalPrinterColumns[{ci}]"
        if not col.get("name"):
            errs.append(f"{cp}.name: Required value")
        ctype = col.get("type")
        if not ctype:
            errs.append(f"{cp}.type: Required value: must be one of {','.join(PRINTER_COLUMN_TYPES)}")
        elif ctype not in PRINTER_COLUMN_TYPES:
            errs.append(f"{cp}.type: Invalid value: {ctype!r}: must be one of {','.join(PRINTER_COLUMN_TYPES)}")
        if col.get("format") and col["format"] not in PRINTER_COLUMN_FORMATS:
            errs.append(f"{cp}.format: Invalid value: {col['format']!r}: must be one of {','.join(PRINTER_COLUMN_FORMATS)}")
        jp = col.get("jsonPath")
        if not jp:
            errs.append(f"{cp}.jsonPath: Required value")
            continue
        if not isinstance(jp, str) or not jp.startswith("."):
            errs.append(f"{cp}.jsonPath: Invalid value: {jp!r}: must be a simple json path starting with .")
            continue
        if root is None or jp == "." or jp.startswith(".metadata.") or jp == ".metadata":
            continue
        node, problem = resolve_path(root, jp)
        if problem:
            errs.append(f"{cp}.jsonPath: Invalid value: {jp!r}: {problem}")
        elif node is not None and ctype in PRINTER_COLUMN_TYPES and not _column_type_ok(node, ctype):
            errs.append(f"{cp}.type: Invalid value: {ctype!r}: column {col.get('name')!r} shows {jp}, "
                        f"which the schema types as {_describe_type(node)}")
    return errs


def _describe_type(node: dict) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "int-or-string"
    return repr(node.get("type")) if node.get("type") else "untyped"


def _node_admits(node: dict, want: str) -> bool:
    if node.get("x-kubernetes-preserve-unknown-fields") and not node.get("type"):
        return True
    return node.get("type") == want


def _column_type_ok(node: dict, ctype: str) -> bool:
    t = node.get("type")
    if node.get("x-kubernetes-preserve-unknown-fields") and not t:
        return True
    if ctype == "string":
        return True  # anything prints as a string
    if ctype == "integer":
        return t == "integer"
    if ctype == "number":
        return t in ("integer", "number")
    if ctype == "boolean":
        return t == "boolean"
    if ctype == "date":
        return t == "string"
    return True


def _split_json_path(path: str) -> list[tuple[str, str]] | None:
    """`.a.b[*].c` -> [('field','a'),('field','b'),('array','*'),('field','c')]; None if the
    path uses JSONPath features this resolver does not follow (recursive descent, unions...)."""
    p = path.strip()
    if p.startswith("{") and p.endswith("}"):
        p = p[1:-1].strip()
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == ".":
            if p[i + 1:i + 2] == ".":
                return None  # recursive descent
            j = i + 1
            while j < len(p) and p[j] not in ".[":
                j += 1
            if j > i + 1:
                out.append(("field", p[i + 1:j]))
            i = j
        elif c == "[":
            depth, j, quote = 0, i, None
            while j < len(p):
                ch = p[j]
                if quote:
                    if ch == quote:
                        quote = None
                elif ch in "'\"":
                    quote = ch
                elif ch == "[":
                    depth += 1
                elif ch == "]":
                    depth -= 1
                    if depth == 0:
                        break
                j += 1
            inner = p[i + 1:j].strip()
            m = re.fullmatch(r"""(['"])(.*)\1""", inner)
            if m:
                out.append(("field", m.group(2)))
            elif "," in inner and not inner.startswith("?"):
                return None  # union
            else:
                out.append(("array", inner))
            i = j + 1
        else:
            return None
    return out


def resolve_path(root: dict, path: str) -> tuple[dict | None, str | None]:
    """Follow a printer-column / scale JSON path through a schema.

    Returns (leaf node, None) when it resolves, (None, None) when it cannot be checked (it
    enters x-kubernetes-preserve-unknown-fields or uses unsupported JSONPath), and
    (None, problem) when the path names something the schema does not have."""
    steps = _split_json_path(path)
    if steps is None:
        return None, None
    node = root
    walked = ""
    for kind, name in steps:
        if kind == "field":
            props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
            if name in props:
                node = props[name]
            elif isinstance(node.get("additionalProperties"), dict):
                node = node["additionalProperties"]
            elif node.get("x-kubernetes-preserve-unknown-fields") or node.get("additionalProperties") is True:
                return None, None
            elif node.get("type") not in (None, "object") or node.get("x-kubernetes-int-or-string"):
                return None, f"{walked or '.'} is {_describe_type(node)}, it has no field {name!r}"
            else:
                return None, f"no field {name!r} under {walked or '.'} in the schema"
            walked += f".{name}"
        else:
            if node.get("type") == "array" and isinstance(node.get("items"), dict):
                node = node["items"]
            elif node.get("x-kubernetes-preserve-unknown-fields"):
                return None, None
            else:
                return None, f"{walked} is {_describe_type(node)}, not an array, but the path indexes it with [{name}]"
            walked += f"[{name}]"
    return node, None


# --- ValidateCustomResourceDefinitionOpenAPISchema + specStandardValidatorV3 -------------------


def openapi_schema_rules(s: Any, path: str, is_root: bool = False, inside_meta: bool = False,
                         no_defaults: str | None = None) -> list[str]:
    errs: list[str] = []
    if not isinstance(s, dict):
        return [f"{path}: Invalid value: must be a schema object"]

    t = s.get("type")
    if t is not None and not isinstance(t, str):
        errs.append(f"{path}.type: Invalid value: {t!r}: must be a single type name (use nullable / x-kubernetes-int-or-string instead of a list)")
    elif t == "null":
        errs.append(f"{path}.type: Forbidden: type cannot be set to null, use nullable as an alternative")
    elif t and t not in OPENAPI_V3_TYPES:
        errs.append(f"{path}.type: Unsupported value: {t!r}: supported values: {', '.join(OPENAPI_V3_TYPES)}")
    if "default" in s and no_defaults is not None:
        errs.append(f"{path}.default: Forbidden: must not be set {no_defaults}")
    for k, what in (("id", "id"), ("additionalItems", "additionalItems"), ("patternProperties", "patternProperties"),
                    ("definitions", "definitions"), ("dependencies", "dependencies"), ("$ref", "$ref")):
        if k in s and s[k] not in (None, {}, ""):
            errs.append(f"{path}.{k}: Forbidden: {what} is not supported")
    if isinstance(s.get("items"), list):
        errs.append(f"{path}.items: Forbidden: items must be a schema object and not an array")
    if inside_meta and s.get("x-kubernetes-embedded-resource"):
        errs.append(f"{path}.x-kubernetes-embedded-resource: Forbidden: must not be used inside of resource meta")
    if s.get("uniqueItems") is True:
        errs.append(f"{path}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic")

    props = s.get("properties") if isinstance(s.get("properties"), dict) else {}
    ap = s.get("additionalProperties")
    if ap is not None:
        if props and (ap is False or isinstance(ap, dict)):
            errs.append(f"{path}.additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive")
        if isinstance(ap, dict):
            sub_no_defaults = "inside additionalProperties applying to object metadata" if inside_meta else no_defaults
            errs.extend(openapi_schema_rules(ap, child(path, "additionalProperties"), False, inside_meta, sub_no_defaults))
    for pname, psub in props.items():
        sub_meta, sub_no_defaults = inside_meta, no_defaults
        if (is_root or s.get("x-kubernetes-embedded-resource")) and pname in META_FIELDS:
            sub_meta = True
            if is_root:
                sub_no_defaults = f"in top-level {pname}"
        errs.extend(openapi_schema_rules(psub, key(child(path, "properties"), pname), False, sub_meta, sub_no_defaults))
    if isinstance(s.get("not"), dict):
        errs.extend(openapi_schema_rules(s["not"], child(path, "not"), False, inside_meta, no_defaults))
    for junctor in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(s.get(junctor) or []):
            errs.extend(openapi_schema_rules(sub, index(child(path, junctor), i), False, inside_meta, no_defaults))
    if isinstance(s.get("items"), dict):
        errs.extend(openapi_schema_rules(s["items"], child(path, "items"), False, inside_meta, no_defaults))
    elif isinstance(s.get("items"), list):
        for i, sub in enumerate(s["items"]):
            errs.extend(openapi_schema_rules(sub, index(child(path, "items"), i), False, inside_meta, no_defaults))

    if s.get("x-kubernetes-preserve-unknown-fields") is False:
        errs.append(f"{path}.x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined")

    map_type = s.get("x-kubernetes-map-type")
    if map_type is not None:
        if t != "object":
            errs.append(f"{path}.type: {'Required value' if not t else f'Invalid value: {t!r}'}: must be object if x-kubernetes-map-type is specified")
        if map_type not in ("atomic", "granular"):
            errs.append(f"{path}.x-kubernetes-map-type: Unsupported value: {map_type!r}: supported values: \"atomic\", \"granular\"")

    list_type = s.get("x-kubernetes-list-type")
    items = s.get("items") if isinstance(s.get("items"), dict) else None
    if list_type is not None:
        if t != "array":
            errs.append(f"{path}.type: {'Required value' if not t else f'Invalid value: {t!r}'}: must be array if x-kubernetes-list-type is specified")
        elif list_type == "set" and items is not None:
            if items.get("type") == "array" and items.get("x-kubernetes-list-type") not in (None, "atomic"):
                errs.append(f"{path}.items.x-kubernetes-list-type: Invalid value: must be atomic as item of a list with x-kubernetes-list-type=set")
            if items.get("type") == "object" and items.get("x-kubernetes-map-type") != "atomic":
                errs.append(f"{path}.items.x-kubernetes-map-type: Invalid value: must be atomic as item of a list with x-kubernetes-list-type=set")
        if list_type not in ("atomic", "set", "map"):
            errs.append(f"{path}.x-kubernetes-list-type: Unsupported value: {list_type!r}: supported values: \"atomic\", \"map\", \"set\"")
    map_keys = s.get("x-kubernetes-list-map-keys") or []
    if map_keys and list_type != "map":
        errs.append(f"{path}.x-kubernetes-list-type: {'Required value' if list_type is None else f'Invalid value: {list_type!r}'}: must be map if x-kubernetes-list-map-keys is non-empty")
    if list_type == "map":
        if not map_keys:
            errs.append(f"{path}.x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map")
        if "items" not in s:
            errs.append(f"{path}.items: Required value: must have a schema if x-kubernetes-list-type is map")
        elif items is None:
            errs.append(f"{path}.items: Invalid value: must only have a single schema if x-kubernetes-list-type is map")
        elif items.get("type") != "object":
            errs.append(f"{path}.items.type: Invalid value: {items.get('type')!r}: must be object if parent array's x-kubernetes-list-type is map")
        else:
            iprops = items.get("properties") or {}
            for k in map_keys:
                if k not in iprops:
                    errs.append(f"{path}.x-kubernetes-list-map-keys: Invalid value: {map_keys!r}: entries must all be names of item properties ({k!r} is not)")
                elif iprops[k].get("type") in ("array", "object"):
                    errs.append(f"{path}.items.properties[{k}].type: Invalid value: must be a scalar type if parent array's x-kubernetes-list-type is map")
            if len(set(map_keys)) != len(map_keys):
                errs.append(f"{path}.x-kubernetes-list-map-keys: Invalid value: {map_keys!r}: must not contain duplicate entries")
    # validateMapListKeysMapSet
    if items is not None and list_type in ("set", "map"):
        if items.get("nullable"):
            errs.append(f"{path}.items.nullable: Forbidden: cannot be nullable when x-kubernetes-list-type is {list_type}")
        if list_type == "map":
            required = set(items.get("required") or [])
            for k in map_keys:
                obj = (items.get("properties") or {}).get(k)
                if obj is None:
                    continue
                if k not in required and "default" not in obj:
                    errs.append(f"{path}.items.properties[{k}].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property")
                if obj.get("nullable"):
                    errs.append(f"{path}.items.properties[{k}].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it cannot be nullable")

    for i, rule in enumerate(s.get("x-kubernetes-validations") or []):
        rp = index(child(path, "x-kubernetes-validations"), i)
        r = str(rule.get("rule") or "").strip()
        msg = rule.get("message")
        if not r:
            errs.append(f"{rp}.rule: Required value: rule is not specified")
        elif msg is not None and len(msg) > 0 and not msg.strip():
            errs.append(f"{rp}.message: Invalid value: message must be non-empty if specified")
        elif msg and re.search(r"[\n\r]", msg.strip()):
            errs.append(f"{rp}.message: Invalid value: message must not contain line breaks")
        elif re.search(r"[\n\r]", r) and not (msg or "").strip():
            errs.append(f"{rp}.message: Required value: message must be specified if rule contains line breaks")
    return errs


# --- structural schema (pkg/apiserver/schema: ValidateStructural + completeness) -------------

_LEVEL_MSG = {"root": "must not be empty at the root",
              "item": "must not be empty for specified array items",
              "field": "must not be empty for specified object fields"}


def structural_schema_rules(root: dict, path: str) -> list[str]:
    errs = _structural_invariants(root, "root", path)
    errs.extend(_structural_completeness(root, path))
    return errs


def _is_int_or_string_anyof(s: dict) -> bool:
    return s.get("anyOf") == INT_OR_STRING_ANYOF


def _is_int_or_string_allof(s: dict) -> bool:
    allof = s.get("allOf")
    return isinstance(allof, list) and len(allof) >= 1 and isinstance(allof[0], dict) \
        and allof[0].get("anyOf") == INT_OR_STRING_ANYOF


def _structural_invariants(s: Any, lvl: str, path: str) -> list[str]:
    if not isinstance(s, dict):
        return []
    errs: list[str] = []
    t = s.get("type")
    int_or_string = s.get("x-kubernetes-int-or-string") is True
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True
    props = s.get("properties") if isinstance(s.get("properties"), dict) else {}

    if t == "array" and not isinstance(s.get("items"), dict):
        errs.append(f"{path}.items: Required value: must be specified")
    if isinstance(s.get("items"), dict):
        errs.extend(_structural_invariants(s["items"], "item", child(path, "items")))
    for pname, psub in props.items():
        errs.extend(_structural_invariants(psub, "field", key(child(path, "properties"), pname)))
    ap = s.get("additionalProperties")
    if ap is not None:
        if lvl == "root":
            errs.append(f"{path}.additionalProperties: Forbidden: must not be used at the root")
        if isinstance(ap, dict):
            errs.extend(_structural_invariants(ap, "field", child(path, "additionalProperties")))

    if int_or_string and preserve:
        errs.append(f"{path}.x-kubernetes-preserve-unknown-fields: Invalid value: true: must be false if x-kubernetes-int-or-string is true")
    if int_or_string and embedded:
        errs.append(f"{path}.x-kubernetes-embedded-resource: Invalid value: true: must be false if x-kubernetes-int-or-string is true")
    # Not an API-server rule, but the documented int-or-string shape: a `type` next to it would
    # make every value of the other kind invalid.
    if int_or_string and t:
        errs.append(f"{path}.type: Invalid value: {t!r}: must be empty if x-kubernetes-int-or-string is true "
                    f"(otherwise values of the other kind are rejected)")

    errs.extend(_value_validation(s, _is_int_or_string_anyof(s), _is_int_or_string_allof(s), lvl, path))

    if embedded and t != "object":
        errs.append(f"{path}.type: {'Required value' if not t else f'Invalid value: {t!r}'}: must be object if x-kubernetes-embedded-resource is true")
    elif not t and not int_or_string and not preserve:
        extra = " (nullable alone does not give a type)" if s.get("nullable") else ""
        errs.append(f"{path}.type: Required value: {_LEVEL_MSG[lvl]}{extra}")
    if embedded and ap is not None:
        errs.append(f"{path}.additionalProperties: Forbidden: must not be used if x-kubernetes-embedded-resource is set")
    if lvl == "root" and t and t != "object":
        errs.append(f"{path}.type: Invalid value: {t!r}: must be object at the root")

    check_metadata = lvl == "root" or embedded
    for meta_field in ("kind", "apiVersion"):
        if check_metadata and meta_field in props and props[meta_field].get("type") != "string":
            errs.append(f"{key(child(path, 'properties'), meta_field)}.type: Invalid value: {props[meta_field].get('type')!r}: must be string")
    if "metadata" in props:
        errs.extend(_metadata_invariants(props["metadata"], check_metadata, lvl, key(child(path, "properties"), "metadata")))
    if embedded and not preserve and not props:
        errs.append(f"{path}.properties: Required value: must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields")
    return errs


def _metadata_invariants(m: Any, check_metadata: bool, lvl: str, path: str) -> list[str]:
    errs: list[str] = []
    if not isinstance(m, dict):
        return errs
    if check_metadata and m.get("type") != "object":
        errs.append(f"{path}.type: Invalid value: {m.get('type')!r}: must be object")
    if lvl == "root":
        rest = {k: v for k, v in m.items() if k not in ("type", "default")}
        props = rest.pop("properties", None) or {}
        if props and not (set(props) <= {"name", "generateName"}):
            rest["properties"] = props
        if rest:
            errs.append(f"{path}: Forbidden: must not specify anything other than name and generateName, "
                        f"but metadata is implicitly specified (found {sorted(rest)})")
    return errs


def _value_validation(s: dict, skip_anyof: bool, skip_first_allof_anyof: bool, lvl: str, path: str) -> list[str]:
    errs: list[str] = []
    if not skip_anyof:
        for i, sub in enumerate(s.get("anyOf") or []):
            errs.extend(_nested_value_validation(sub, False, False, lvl, index(child(path, "anyOf"), i)))
    for i, sub in enumerate(s.get("allOf") or []):
        errs.extend(_nested_value_validation(sub, skip_first_allof_anyof and i == 0, False, lvl, index(child(path, "allOf"), i)))
    for i, sub in enumerate(s.get("oneOf") or []):
        errs.extend(_nested_value_validation(sub, False, False, lvl, index(child(path, "oneOf"), i)))
    if isinstance(s.get("not"), dict):
        errs.extend(_nested_value_validation(s["not"], False, False, lvl, child(path, "not")))
    pattern = s.get("pattern")
    if isinstance(pattern, str):
        try:
            re.compile(pattern)
        except re.error as e:
            errs.append(f"{path}.pattern: Invalid value: {pattern!r}: must be a valid regular expression, but isn't: {e}")
    return errs


def _nested_value_validation(v: Any, skip_anyof: bool, skip_allof_anyof: bool, lvl: str, path: str) -> list[str]:
    if not isinstance(v, dict):
        return []
    errs = _value_validation(v, skip_anyof, skip_allof_anyof, lvl, path)
    if isinstance(v.get("items"), dict):
        errs.extend(_nested_value_validation(v["items"], False, False, lvl, child(path, "items")))
    for pname, psub in (v.get("properties") or {}).items():
        errs.extend(_nested_value_validation(psub, False, False, "field", key(child(path, "properties"), pname)))
    for k in FORBIDDEN_IN_JUNCTORS:
        if k not in v:
            continue
        if k in _FORBIDDEN_IF_TRUE:
            if v[k] is True:
                errs.append(f"{path}.{k}: Forbidden: must be false to be structural{_JUNCTOR_HINT}")
        elif k in _FORBIDDEN_IF_PRESENT:
            errs.append(f"{path}.{k}: Forbidden: must be undefined to be structural{_JUNCTOR_HINT}")
        elif v[k] not in (None, "", []):
            errs.append(f"{path}.{k}: Forbidden: must be empty to be structural{_JUNCTOR_HINT}")
    if "metadata" in (v.get("properties") or {}):
        errs.append(f"{path}.properties[metadata]: Forbidden: must not be specified in a nested context")
    return errs


def _structural_completeness(s: Any, path: str) -> list[str]:
    """Every field/item named inside a junctor must also be specified outside of it (checked at
    every node, as the Kubernetes documentation states the rule)."""
    if not isinstance(s, dict):
        return []
    errs = _junctor_completeness(s, s, path, path)
    for pname, psub in (s.get("properties") or {}).items():
        errs.extend(_structural_completeness(psub, key(child(path, "properties"), pname)))
    if isinstance(s.get("items"), dict):
        errs.extend(_structural_completeness(s["items"], child(path, "items")))
    if isinstance(s.get("additionalProperties"), dict):
        errs.extend(_structural_completeness(s["additionalProperties"], child(path, "additionalProperties")))
    return errs


def _junctor_completeness(v: dict, s: dict | None, spath: str, vpath: str) -> list[str]:
    errs: list[str] = []
    subs: list[tuple[str, Any]] = []
    if isinstance(v.get("not"), dict):
        subs.append((child(vpath, "not"), v["not"]))
    for junctor in ("allOf", "anyOf", "oneOf"):
        for i, sub in enumerate(v.get(junctor) or []):
            subs.append((index(child(vpath, junctor), i), sub))
    for sub_vpath, sub in subs:
        errs.extend(_nested_completeness(sub, s, spath, sub_vpath))
    return errs


def _nested_completeness(v: Any, s: dict | None, spath: str, vpath: str) -> list[str]:
    if not isinstance(v, dict):
        return []
    if s is None:
        return [f"{spath}: Required value: because it is defined in {vpath}"]
    errs = _junctor_completeness(v, s, spath, vpath)
    if isinstance(v.get("items"), dict):
        s_items = s.get("items") if isinstance(s.get("items"), dict) else None
        errs.extend(_nested_completeness(v["items"], s_items, child(spath, "items"), child(vpath, "items")))
    s_props = s.get("properties") or {}
    for pname, vsub in (v.get("properties") or {}).items():
        if pname not in s_props:
            errs.append(f"{key(child(spath, 'properties'), pname)}: Required value: because it is defined in {key(child(vpath, 'properties'), pname)}")
        else:
            errs.extend(_nested_completeness(vsub, s_props[pname], key(child(spath, "properties"), pname), key(child(vpath, "properties"), pname)))
    return errs


# --- defaults (structuraldefaulting.ValidateDefaults) -------------------------------------------


def default_rules(root: dict, path: str) -> list[str]:
    """Every `default` must validate against its own node, with no unknown (pruned) fields."""
    errs: list[str] = []

    def walk(s: Any, p: str) -> None:
        if not isinstance(s, dict):
            return
        if "default" in s:
            schema = to_json_schema(s)
            validator = _validator_class()(schema, format_checker=FORMAT_CHECKER)
            for e in validator.iter_errors(s["default"]):
                errs.append(f"{p}.default{json_path(e.absolute_path) if list(e.absolute_path) else ''}: "
                            f"Invalid value: {e.message}")
        for pname, psub in (s.get("properties") or {}).items():
            walk(psub, key(child(p, "properties"), pname))
        if isinstance(s.get("items"), dict):
            walk(s["items"], child(p, "items"))
        if isinstance(s.get("additionalProperties"), dict):
            walk(s["additionalProperties"], child(p, "additionalProperties"))

    walk(root, path)
    return errs


# ---------------------------------------------------------------------------------------------
# 3. Manifests against the CRDs
# ---------------------------------------------------------------------------------------------

_VALIDATION_KEYWORDS = (
    "maximum", "minimum", "maxLength", "minLength", "pattern", "maxItems", "minItems",
    "multipleOf", "required", "maxProperties", "minProperties", "format",
)


def to_json_schema(node: Any, *, in_junctor: bool = False, close: bool = True) -> Any:
    """An OpenAPI v3 (Kubernetes structural) schema node as JSON Schema 2020-12.

    * ``nullable: true`` adds ``"null"`` to the type (and to ``enum``);
    * ``x-kubernetes-int-or-string: true`` is ``type: [integer, string]``;
    * ``x-kubernetes-preserve-unknown-fields: true`` leaves the object open;
    * any other object without ``additionalProperties`` is closed (``additionalProperties:
      false``): the API server prunes unknown fields, and strict field validation rejects them;
      ``close=False`` leaves this one node open (used for ``metadata``);
    * OpenAPI 3.0 boolean ``exclusiveMinimum``/``exclusiveMaximum`` become numeric bounds;
    * ``x-kubernetes-list-type: set`` is ``uniqueItems``, ``map`` checks key uniqueness.
    """
    if isinstance(node, bool):
        return node
    if not isinstance(node, dict):
        return {}
    out: dict[str, Any] = {}
    nullable = node.get("nullable") is True
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if node.get("x-kubernetes-int-or-string") is True:
        types: list[str] = ["integer", "string"]
    elif isinstance(node.get("type"), str) and node["type"]:
        types = [node["type"]]
    else:
        types = []
    if types and nullable:
        types.append("null")
    if types:
        out["type"] = types[0] if len(types) == 1 else types
    if "enum" in node and isinstance(node["enum"], list):
        out["enum"] = list(node["enum"]) + ([None] if nullable and None not in node["enum"] else [])
    for k in _VALIDATION_KEYWORDS:
        if k in node:
            out[k] = node[k]
    if node.get("exclusiveMaximum") is True and "maximum" in node:
        out["exclusiveMaximum"] = out.pop("maximum")
    if node.get("exclusiveMinimum") is True and "minimum" in node:
        out["exclusiveMinimum"] = out.pop("minimum")

    props = node.get("properties")
    if isinstance(props, dict):
        out["properties"] = {k: to_json_schema(v, in_junctor=in_junctor) for k, v in props.items()}
    ap = node.get("additionalProperties")
    if isinstance(ap, (dict, bool)):
        out["additionalProperties"] = to_json_schema(ap, in_junctor=in_junctor)
    elif (close and not in_junctor and not preserve
          and (node.get("type") == "object" or isinstance(props, dict))):
        out["additionalProperties"] = False
    if isinstance(node.get("items"), dict):
        out["items"] = to_json_schema(node["items"], in_junctor=in_junctor)
    for junctor in ("allOf", "anyOf", "oneOf"):
        if isinstance(node.get(junctor), list):
            out[junctor] = [to_json_schema(v, in_junctor=True) for v in node[junctor]]
    if isinstance(node.get("not"), dict):
        out["not"] = to_json_schema(node["not"], in_junctor=True)

    list_type = node.get("x-kubernetes-list-type")
    if list_type == "set":
        out["uniqueItems"] = True
    elif list_type == "map" and node.get("x-kubernetes-list-map-keys"):
        out["x-list-map-keys"] = list(node["x-kubernetes-list-map-keys"])
    if node.get("x-kubernetes-embedded-resource") is True and isinstance(out.get("properties"), dict) \
            and out.get("additionalProperties") is False:
        for meta in META_FIELDS:
            out["properties"].setdefault(meta, {"type": "object"} if meta == "metadata" else {"type": "string"})
    return out


def _list_map_keys(validator, keys, instance, schema):
    if not validator.is_type(instance, "array"):
        return
    seen: dict[str, int] = {}
    for i, item in enumerate(instance):
        if not isinstance(item, dict):
            continue
        k = json.dumps([item.get(x) for x in keys], sort_keys=True)
        if k in seen:
            yield jsonschema.ValidationError(
                f"Duplicate value: items [{seen[k]}] and [{i}] have the same "
                f"x-kubernetes-list-map-keys {dict(zip(keys, json.loads(k)))}")
        else:
            seen[k] = i


@functools.lru_cache(maxsize=None)
def _validator_class():
    return jsonschema.validators.extend(jsonschema.Draft202012Validator, {"x-list-map-keys": _list_map_keys})


FORMAT_CHECKER = jsonschema.FormatChecker(formats=())

# strfmt's date-time accepts RFC 3339 and a few ISO 8601 variants
_DATE_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?")


@FORMAT_CHECKER.checks("date-time")
def _check_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.fullmatch(value))


@FORMAT_CHECKER.checks("date")
def _check_date(value: object) -> bool:
    return not isinstance(value, str) or bool(re.fullmatch(r"\d{4}-\d{2}-\d{2}", value))


@FORMAT_CHECKER.checks("byte", raises=(binascii.Error, ValueError))
def _check_byte(value: object) -> bool:
    if isinstance(value, str):
        base64.b64decode(value, validate=True)
    return True


@FORMAT_CHECKER.checks("int32")
def _check_int32(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2 ** 31) <= value < 2 ** 31


@FORMAT_CHECKER.checks("int64")
def _check_int64(value: object) -> bool:
    return not isinstance(value, int) or isinstance(value, bool) or -(2 ** 63) <= value < 2 ** 63


def find_crd(api_version: str, kind: str, crds: Iterable[dict] | None = None) -> tuple[dict | None, str | None]:
    """(CRD, version name) for a manifest's apiVersion/kind; CRD None when no CRD defines the kind."""
    group, _, version = (api_version or "").rpartition("/")
    crd = crd_index(load_crds() if crds is None else crds).get((group, kind))
    return crd, version


def manifest_json_schema(crd: dict, version: str) -> dict:
    """The JSON Schema a manifest of this CRD version must satisfy."""
    spec = crd["spec"]
    vdef = next(v for v in spec["versions"] if v.get("name") == version)
    root = vdef["schema"]["openAPIV3Schema"]
    schema = to_json_schema(root)
    schema.setdefault("type", "object")
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"const": f"{spec['group']}/{version}"}
    props["kind"] = {"const": spec["names"]["kind"]}
    object_meta = {"$ref": f"{_DEFS_ID}#/$defs/{OBJECT_META}"}
    declared_meta = (root.get("properties") or {}).get("metadata")
    props["metadata"] = ({"allOf": [object_meta, to_json_schema(declared_meta, close=False)]}
                         if isinstance(declared_meta, dict) else object_meta)
    if (schema.get("additionalProperties") is None
            and not root.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def prune_nulls_and_default(value: Any, node: Any) -> Any:
    """What the API server does before validating: drop nulls of non-nullable fields that have no
    default, replace them (and missing fields) by defaults."""
    if not isinstance(node, dict):
        return value
    if isinstance(value, dict):
        props = node.get("properties") if isinstance(node.get("properties"), dict) else {}
        ap = node.get("additionalProperties") if isinstance(node.get("additionalProperties"), dict) else None
        for k in list(value):
            sub = props.get(k, ap)
            if not isinstance(sub, dict):
                continue
            if value[k] is None and not sub.get("nullable"):
                if "default" in sub:
                    value[k] = copy.deepcopy(sub["default"])
                else:
                    del value[k]
                    continue
            value[k] = prune_nulls_and_default(value[k], sub)
        for k, sub in props.items():
            if k not in value and isinstance(sub, dict) and "default" in sub:
                value[k] = prune_nulls_and_default(copy.deepcopy(sub["default"]), sub)
    elif isinstance(value, list) and isinstance(node.get("items"), dict):
        for i, item in enumerate(value):
            value[i] = prune_nulls_and_default(item, node["items"])
    return value


def validate_manifest(doc: Any, crds: Iterable[dict] | None = None, k8s_version: str | None = None) -> list[str]:
    """Errors (with JSON paths) of one custom-resource manifest against its CRD; [] when valid."""
    if not isinstance(doc, dict):
        return [f".: Invalid value: a manifest must be a mapping, got {type(doc).__name__}"]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or "/" not in api_version:
        return [f".apiVersion: Invalid value: {api_version!r}: must be <group>/<version>"]
    if not isinstance(kind, str) or not kind:
        return [f".kind: Required value"]
    crd, version = find_crd(api_version, kind, crds)
    if crd is None:
        return [f".kind: Invalid value: no CRD in {CRDS_PATH.relative_to(REPO_ROOT)} defines {kind} in group "
                f"{api_version.rpartition('/')[0]}"]
    versions = {v.get("name"): v for v in crd["spec"].get("versions") or []}
    if version not in versions:
        return [f".apiVersion: Invalid value: {api_version!r}: {crd['metadata']['name']} has no version "
                f"{version!r} (has {sorted(versions)})"]
    if not versions[version].get("served"):
        return [f".apiVersion: Invalid value: {api_version!r}: version {version!r} is not served"]
    k8s_version = k8s_version or TARGET_K8S_VERSION
    root = versions[version]["schema"]["openAPIV3Schema"]
    instance = prune_nulls_and_default(copy.deepcopy(doc), root)
    schema = manifest_json_schema(crd, version)
    validator = _validator_class()(schema, registry=_registry(k8s_version, False), format_checker=FORMAT_CHECKER)
    errors = []
    for e in validator.iter_errors(instance):
        errors.extend(_leaf_errors(e))
    return sorted(set(errors))


def _leaf_errors(e: jsonschema.ValidationError) -> list[str]:
    """Flatten anyOf/oneOf errors to their most relevant causes, keeping paths."""
    if e.context and e.validator in ("anyOf", "oneOf", "allOf"):
        best = jsonschema.exceptions.best_match(e.context)
        if best is not None:
            return _leaf_errors(best)
    return [f"{json_path(e.absolute_path)}: {e.message}"]


# ---------------------------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------------------------


def fixture_files(dirs: Iterable[Path] = FIXTURE_DIRS) -> list[Path]:
    out: list[Path] = []
    for d in dirs:
        if d.is_dir():
            out.extend(sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml")))
    return out


_EXPECT_INVALID = re.compile(r"^#\s*expect\s*:\s*invalid\b", re.IGNORECASE)


def is_expected_invalid(path: Path) -> bool:
    """`*.invalid.yaml` / `*-invalid.yaml`, or a `# expect: invalid` line in the comment header."""
    stem = path.name.rsplit(".", 1)[0].lower()
    if stem.endswith(".invalid") or stem.endswith("-invalid") or stem.endswith("_invalid") or stem == "invalid":
        return True
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = line.strip()
            if not s or s == "---":
                continue
            if not s.startswith("#"):
                break
            if _EXPECT_INVALID.match(s):
                return True
    return False


def api_group(doc: Any) -> str | None:
    if isinstance(doc, dict) and isinstance(doc.get("apiVersion"), str) and "/" in doc["apiVersion"]:
        return doc["apiVersion"].rpartition("/")[0]
    return None
