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


INT64 = (-(2**63), 2**63 - 1)
# RE2 (the apiserver's regular expressions) is ASCII-only for \s, \d and \w, and its `$` matches only
# at the very end; Python's would also accept Unicode spaces or digits and a trailing newline.
_RE2_CLASSES = {"s": "\t\n\f\r ", "d": "0-9", "w": "0-9A-Za-z_"}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def _type_ok(value: Any, expected: str) -> bool:
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    if expected == "integer":  # JSON numbers decode to int64 when integral and in range, else float64
        if isinstance(value, float):
            return value.is_integer() and INT64[0] <= value <= INT64[1]
        return isinstance(value, int) and INT64[0] <= value <= INT64[1]
    return isinstance(value, _JSON_TYPES.get(expected, (object,)))


@lru_cache(maxsize=256)
def go_pattern(pattern: str) -> re.Pattern[str]:
    """A Python regular expression that matches what the apiserver's RE2 `pattern` matches."""
    out, in_class, index = [], False, 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            escaped = pattern[index + 1]
            if escaped.lower() in _RE2_CLASSES:
                members = _RE2_CLASSES[escaped.lower()]
                negated = escaped.isupper()
                if in_class:
                    if negated:  # a negated shorthand inside a class: not used by Tessera's patterns
                        raise ValueError(f"unsupported pattern construct \\{escaped} in a class: {pattern}")
                    out.append(members)
                else:
                    out.append(f"[{'^' if negated else ''}{members}]")
            else:
                out.append(char + escaped)
            index += 2
            continue
        if char == "[" and not in_class:
            in_class = True
        elif char == "]" and in_class and out[-1] not in ("[", "[^"):
            in_class = False
        out.append("\\Z" if char == "$" and not in_class else char)
        index += 1
    return re.compile("".join(out))


def apply_defaults(value: Any, schema: Schema) -> Any:
    """Fill in schema defaults the way the apiserver does (only inside objects that exist).

    As in the apiserver, nulls of fields that are not nullable are dropped first (then defaulted).
    """
    if isinstance(value, dict):
        for name in [k for k, v in value.items() if v is None and not _field_schema(schema, k).get("nullable")]:
            del value[name]
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


def _field_schema(schema: Schema, name: str) -> Schema:
    properties = schema.get("properties") or {}
    if name in properties:
        return properties[name]  # type: ignore[no-any-return]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else {}


def _join(path: str, name: str | int) -> str:
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def _shown(value: Any, limit: int = 120) -> str:
    """A value as an error message quotes it: cut short (a refused value may be megabytes long)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _check_scalar(value: Any, schema: Schema, path: str) -> Iterator[FieldError]:
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(f'"{v}"' for v in schema["enum"])
        yield FieldError(path, f'Unsupported value: {_shown(value)}: supported values: {allowed}')
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
        if "pattern" in schema and go_pattern(schema["pattern"]).search(value) is None:
            yield FieldError(path, f"Invalid value: {_shown(value)}: should match '{schema['pattern']}'")


def check_schema(value: Any, schema: Schema, path: str = "") -> Iterator[FieldError]:
    """Structural checks of one value against its schema, recursively."""
    expected = schema.get("type")
    if expected and not _type_ok(value, expected):
        shown = "number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
        yield FieldError(path, f"Invalid value: {shown}: expected {expected}")
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

    activation = {"self": _to_cel(value, schema)}
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


def _to_cel(value: Any, schema: Schema) -> Any:
    """The value as the apiserver hands it to CEL: typed by its schema, so a number field holds a
    double even when written as an integer, and an integer field written as a float (which the
    schema check lets through when it is integral) fails any rule that reads it."""
    import celpy

    types = celpy.celtypes
    expected = schema.get("type")
    if isinstance(value, bool) or value is None:
        return celpy.json_to_cel(value)  # type: ignore[attr-defined]
    if isinstance(value, dict):
        return types.MapType({types.StringType(k): _to_cel(v, _field_schema(schema, k)) for k, v in value.items()})
    if isinstance(value, list):
        items = schema.get("items")
        return types.ListType([_to_cel(v, items if isinstance(items, dict) else {}) for v in value])
    if isinstance(value, (int, float)) and expected == "number":
        return types.DoubleType(float(value))
    if isinstance(value, float) and expected == "integer":
        return _mistyped_number(float(value))
    if isinstance(value, int) and not INT64[0] <= value <= INT64[1]:
        return types.DoubleType(float(value))
    return celpy.json_to_cel(value)  # type: ignore[attr-defined]


def _mistyped_number(value: float) -> Any:
    """A double where the schema says integer: reading it in a rule is an error, as in the apiserver."""
    import celpy

    def refuse(*_: Any) -> Any:
        raise TypeError(f"invalid data, expected int, got float64 ({value})")

    operations = ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__", "__add__", "__radd__", "__sub__",
                  "__rsub__", "__mul__", "__rmul__", "__truediv__", "__rtruediv__", "__mod__", "__neg__")
    mistyped = type("MistypedNumber", (celpy.celtypes.DoubleType,),
                    {**dict.fromkeys(operations, refuse), "__hash__": float.__hash__})
    return mistyped(value)


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
    elif name and (not isinstance(name, str) or len(name) > 253 or _NAME.match(name) is None):
        errors.insert(0, FieldError("metadata.name", f"Invalid value: {name!r}: a lowercase RFC 1123 subdomain "
                                                     "must consist of lower case alphanumeric characters, '-' or '.'"))
    return errors


def is_tessera_manifest(manifest: Any) -> bool:
    """Whether a YAML document is one of Tessera's kinds (others are skipped by `tessera validate`)."""
    return isinstance(manifest, dict) and str(manifest.get("apiVersion", "")).startswith("tessera.dev/")
