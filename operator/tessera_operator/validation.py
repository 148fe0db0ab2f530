"""Offline validation of manifests with the same schema and CEL rules the apiserver applies.

`tessera validate` runs this in a GitOps pipeline before merge: every tessera.dev manifest is
defaulted and checked against the generated CRD schema (types, enums, bounds, patterns, required
and unknown fields) and its `x-kubernetes-validations` CEL rules, evaluated with cel-python plus
the few Kubernetes CEL list extensions the rules use. Transition rules (those that read `oldSelf`)
need the previous object and are left to the apiserver.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from tessera_operator.api.v1alpha1 import API_VERSION
from tessera_operator.crdgen import CRDS, crd_by_kind

Schema = dict[str, Any]
KINDS = frozenset(spec.kind for spec in CRDS)


@dataclass(frozen=True)
class FieldError:
    """One problem, at a field path such as spec.autoscaling.minReplicas."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
}


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill in schema defaults the way the apiserver does (only inside objects that exist)."""
    if isinstance(value, dict) and "properties" in schema:
        for name, sub in schema["properties"].items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                value[name] = apply_defaults(value[name], sub)
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key in value:
            value[key] = apply_defaults(value[key], schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(item, schema["items"]) for item in value]
    return value


def _join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _check_scalar(value: Any, schema: Schema, path: str) -> Iterator[FieldError]:
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' for v in schema["enum"])
        yield FieldError(path, f'Unsupported value: {value!r}: supported values: {allowed}')
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema:
            low = schema["minimum"]
            if value < low or (schema.get("exclusiveMinimum") and value == low):
                relation = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
                yield FieldError(path, f"Invalid value: {value}: should be {relation} {low}")
        if "maximum" in schema:
            high = schema["maximum"]
            if value > high or (schema.get("exclusiveMaximum") and value == high):
                relation = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
                yield FieldError(path, f"Invalid value: {value}: should be {relation} {high}")
    if isinstance(value, str):
        if "minLength" in schema and len(value) < schema["minLength"]:
            yield FieldError(path, f"Invalid value: {value!r}: should be at least {schema['minLength']} chars long")
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            yield FieldError(path, f"Too long: may not be more than {schema['maxLength']} characters")
        if "pattern" in schema and re.search(schema["pattern"], value) is None:
            yield FieldError(path, f"Invalid value: {value!r}: should match '{schema['pattern']}'")


def check_schema(value: Any, schema: Schema, path: str = "") -> Iterator[FieldError]:
    """Structural checks of one value against its schema, recursively."""
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        yield FieldError(path, f"Invalid value: {type(value).__name__}: expected {expected}")
        return
    yield from _check_scalar(value, schema, path)
    if isinstance(value, dict):
        for name in schema.get("required", []):
            if name not in value:
                yield FieldError(_join(path, name), "Required value")
        if "maxProperties" in schema and len(value) > schema["maxProperties"]:
            yield FieldError(path, f"Too many: {len(value)}: must have at most {schema['maxProperties']} items")
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for name, sub_value in value.items():
            if properties is not None and name in properties:
                yield from check_schema(sub_value, properties[name], _join(path, name))
            elif isinstance(extra, dict):
                yield from check_schema(sub_value, extra, _join(path, name))
            elif properties is not None and path != "metadata":
                yield FieldError(_join(path, name), "unknown field")
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            yield FieldError(path, f"Too many: {len(value)}: must have at most {schema['maxItems']} items")
        if "minItems" in schema and len(value) < schema["minItems"]:
            yield FieldError(path, f"Invalid value: must have at least {schema['minItems']} items")
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                yield from check_schema(item, schema["items"], _join(path, index))
    yield from _check_rules(value, schema, path)


@lru_cache(maxsize=256)
def _program(rule: str) -> Any:
    import celpy  # imported lazily: only validation needs it

    env = celpy.Environment()
    return env.program(env.compile(rule), functions=_k8s_functions())


def _k8s_functions() -> dict[str, Any]:
    import celpy

    def is_sorted(items: Any) -> Any:
        values = list(items)
        return celpy.celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(values)))

    return {"isSorted": is_sorted}


def _check_rules(value: Any, schema: Schema, path: str) -> Iterator[FieldError]:
    rules = schema.get("x-kubernetes-validations", [])
    if not rules:
        return
    import celpy

    activation = {"self": celpy.json_to_cel(value)}  # type: ignore[attr-defined]
    for rule in rules:
        if "oldSelf" in rule["rule"]:
            continue  # a transition rule: needs the stored object, checked by the apiserver
        where = (path + rule["fieldPath"]).lstrip(".") if rule.get("fieldPath") else path
        try:
            outcome = _program(rule["rule"]).evaluate(activation)
        except Exception as error:  # a rule that cannot be evaluated is a failed rule, as in the apiserver
            yield FieldError(where, f"{rule['message']} (rule could not be evaluated: {error})")
            continue
        if not isinstance(outcome, bool) and not isinstance(outcome, celpy.celtypes.BoolType):
            yield FieldError(where, f"{rule['message']} (rule evaluated to {outcome!r})")
        elif not bool(outcome):
            yield FieldError(where, rule["message"])


@lru_cache(maxsize=8)
def _schema_of(kind: str) -> Schema:
    document = crd_by_kind(kind)
    schema: Schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def validate_manifest(manifest: Any) -> list[FieldError]:
    """Check one manifest. Returns an empty list when the apiserver would accept it."""
    if not isinstance(manifest, dict):
        return [FieldError("", "a manifest must be a mapping")]
    kind = manifest.get("kind")
    if manifest.get("apiVersion") != API_VERSION or kind not in KINDS:
        return [FieldError("apiVersion", f"not a {API_VERSION} kind: {manifest.get('apiVersion')}/{kind}")]
    schema = _schema_of(str(kind))
    document = apply_defaults(copy.deepcopy(manifest), schema)
    errors = list(check_schema(document, schema))
    name = (document.get("metadata") or {}).get("name")
    if not name and not (document.get("metadata") or {}).get("generateName"):
        errors.insert(0, FieldError("metadata.name", "Required value: name or generateName is required"))
    return errors


def is_tessera_manifest(manifest: Any) -> bool:
    """Whether a YAML document is one of Tessera's kinds (others are skipped by `tessera validate`)."""
    return isinstance(manifest, dict) and str(manifest.get("apiVersion", "")).startswith("tessera.dev/")
