"""Generate CustomResourceDefinitions from the pydantic API types.

The pydantic types in `api/v1alpha1` are the single source of every schema. This module turns their
JSON schema into Kubernetes *structural* schemas: `$ref`s inlined, `anyOf [X, null]` collapsed to
X (optional fields are simply not required), titles dropped, JSON-Schema-2020 exclusive bounds
rewritten in OpenAPI v3.0 form, and the CRD-level pieces (printer columns, subresources, root CEL
rules) added. `make crds` writes `crds/*.yaml`; a unit test fails when they drift from the code.
"""

from __future__ import annotations

import argparse
import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from tessera_operator.api.v1alpha1 import GROUP, VERSION
from tessera_operator.api.v1alpha1.evaluation import (
    EvaluationSuiteSpec,
    ModelEvaluationSpec,
    ModelEvaluationStatus,
)
from tessera_operator.api.v1alpha1.model import ModelSpec, ModelStatus

Schema = dict[str, Any]

# Object names of a Model are embedded in its workloads' names together with a version hash, so
# they must leave room under the 63-character limit of labels and Service names.
MAX_MODEL_NAME = 40


@dataclass(frozen=True)
class CrdSpec:
    """Everything about one kind that is not in its pydantic types."""

    kind: str
    plural: str
    short_names: tuple[str, ...]
    spec_type: type[BaseModel]
    status_type: type[BaseModel] | None
    description: str
    printer_columns: tuple[dict[str, Any], ...] = ()
    scale: bool = False
    spec_rules: tuple[dict[str, str], ...] = ()
    root_rules: tuple[dict[str, str], ...] = ()
    spec_required: bool = True
    extra: dict[str, Any] = field(default_factory=dict)


def _condition_column(name: str, condition: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name, "type": "string", "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status'
    }
    if priority:
        column["priority"] = priority
    return column


def _column(name: str, kind: str, path: str, priority: int = 0, description: str | None = None) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
    if description:
        column["description"] = description
    if priority:
        column["priority"] = priority
    return column


AGE = _column("Age", "date", ".metadata.creationTimestamp")

CRDS: tuple[CrdSpec, ...] = (
    CrdSpec(
        kind="Model",
        plural="models",
        short_names=("mdl",),
        spec_type=ModelSpec,
        status_type=ModelStatus,
        description="A large language model that Tessera plans onto GPUs, serves, autoscales and rolls out behind evaluation gates.",
        printer_columns=(
            _condition_column("Ready", "Ready"),
            _column("Replicas", "integer", ".status.replicas", description="Replicas of the current versions"),
            _column("Available", "integer", ".status.readyReplicas", priority=1),
            _column("GPU", "string", ".status.plan.accelerator", description="Accelerator chosen by the planner"),
            _column("TP", "integer", ".status.plan.tensorParallel", description="Tensor-parallel size"),
            _column("Stable", "string", ".status.stable.version"),
            _column("Candidate", "string", ".status.candidate.version"),
            _column("Rollout", "string", ".status.rollout.phase", priority=1),
            _column("Reason", "string", '.status.conditions[?(@.type=="Ready")].reason', priority=1),
            AGE,
        ),
        scale=True,
        root_rules=(
            {
                "rule": f"self.metadata.name.size() <= {MAX_MODEL_NAME}",
                "message": f"metadata.name: a Model's name may be at most {MAX_MODEL_NAME} characters (it prefixes its workloads' names)",
            },
        ),
    ),
    CrdSpec(
        kind="EvaluationSuite",
        plural="evaluationsuites",
        short_names=("evalsuite",),
        spec_type=EvaluationSuiteSpec,
        status_type=None,
        description="A reusable set of evaluation tasks (accuracy, bias probes, latency) that gate a Model's new versions.",
        printer_columns=(AGE,),
    ),
    CrdSpec(
        kind="ModelEvaluation",
        plural="modelevaluations",
        short_names=("meval",),
        spec_type=ModelEvaluationSpec,
        status_type=ModelEvaluationStatus,
        description="An immutable record of one evaluation of a candidate version against a baseline.",
        printer_columns=(
            _column("Model", "string", ".spec.model"),
            _column("Candidate", "string", ".spec.candidate.version"),
            _column("Baseline", "string", ".spec.baseline.version"),
            _column("Verdict", "string", ".status.result.verdict"),
            _column("Reason", "string", ".status.result.reason", priority=1),
            AGE,
        ),
        spec_rules=(
            {"rule": "self == oldSelf", "message": "the spec of a ModelEvaluation is immutable", "reason": "FieldValueForbidden"},
        ),
    ),
)


def _merge_siblings(resolved: Schema, node: Schema, skip: tuple[str, ...]) -> Schema:
    out = dict(resolved)
    for key, value in node.items():
        if key in skip:
            continue
        if key == "x-kubernetes-validations" and key in out:
            out[key] = list(out[key]) + list(value)
        else:
            out[key] = value
    return out


def structural(node: Any, defs: dict[str, Schema]) -> Any:
    """Rewrite one pydantic JSON-schema node into a structural OpenAPI v3 schema node."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].split("/")[-1]]
        return structural(_merge_siblings(copy.deepcopy(target), node, ("$ref",)), defs)
    for union in ("anyOf", "oneOf"):
        if union in node:
            branches = [b for b in node[union] if b != {"type": "null"}]
            if len(branches) != 1:
                raise ValueError(f"cannot make a structural schema of a union of {len(branches)} types: {node}")
            merged = _merge_siblings(copy.deepcopy(branches[0]), node, (union,))
            if merged.get("default", "absent") is None:
                merged.pop("default")
            return structural(merged, defs)
    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "const":
            out["enum"] = [value]
            out.setdefault("type", "string" if isinstance(value, str) else "integer")
        elif key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"], out["exclusiveMinimum"] = value, True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"], out["exclusiveMaximum"] = value, True
        elif key in ("properties",):
            out[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = structural(value, defs)
        elif key == "default" and value is None:
            continue
        elif key == "additionalProperties" and value is False:
            # Structural schemas may not say false here; unknown fields are pruned by the
            # apiserver, refused by kubectl's strict field validation and by `tessera validate`.
            continue
        else:
            out[key] = structural(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return _order(out)


_KEY_ORDER = ("description", "type", "format", "enum", "default", "minimum", "exclusiveMinimum", "maximum",
              "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "maxProperties",
              "required", "properties", "items", "additionalProperties")


def _order(schema: Schema) -> Schema:
    ordered = {key: schema[key] for key in _KEY_ORDER if key in schema}
    ordered.update({key: value for key, value in sorted(schema.items()) if key not in ordered})
    return ordered


class _CrdSchemaGenerator(GenerateJsonSchema):
    """Emits defaults for fields built by a default factory.

    The apiserver defaults only what the schema says; without a default on an omitted nested
    object, its own defaults never apply and CEL rules that read it fail with "no such key".
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            value = factory()  # type: ignore[call-arg]
            if isinstance(value, BaseModel):
                # The whole defaulted object, not {}: the apiserver checks a default against the
                # schema's CEL rules as it stands, before nested defaults would fill it in.
                value = value.model_dump(by_alias=True, exclude_none=True, mode="json")
            schema = {**schema, "default": value}
            schema.pop("default_factory")
        return super().default_schema(schema)


def type_schema(model: type[BaseModel]) -> Schema:
    """The structural schema of one pydantic type."""
    raw = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_CrdSchemaGenerator)
    defs = raw.pop("$defs", {})
    return structural(raw, defs)  # type: ignore[no-any-return]


def crd(spec: CrdSpec) -> dict[str, Any]:
    """The full CustomResourceDefinition of one kind."""
    spec_schema = type_schema(spec.spec_type)
    if spec.spec_rules:
        spec_schema["x-kubernetes-validations"] = list(spec.spec_rules)
    properties: Schema = {
        "apiVersion": {"type": "string", "description": "APIVersion of this object (tessera.dev/v1alpha1)."},
        "kind": {"type": "string", "description": f"Kind of this object ({spec.kind})."},
        "metadata": {"type": "object"},
        "spec": spec_schema,
    }
    if spec.status_type is not None:
        properties["status"] = type_schema(spec.status_type)
    root: Schema = {
        "description": spec.description,
        "type": "object",
        "required": ["spec"] if spec.spec_required else [],
        "properties": properties,
    }
    if spec.root_rules:
        root["x-kubernetes-validations"] = list(spec.root_rules)
    subresources: dict[str, Any] = {}
    if spec.status_type is not None:
        subresources["status"] = {}
    if spec.scale:
        subresources["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    version: dict[str, Any] = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": root},
    }
    if subresources:
        version["subresources"] = subresources
    if spec.printer_columns:
        version["additionalPrinterColumns"] = list(spec.printer_columns)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{spec.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "tessera"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": spec.kind,
                "listKind": f"{spec.kind}List",
                "plural": spec.plural,
                "singular": spec.kind.lower(),
                "shortNames": list(spec.short_names),
                "categories": ["tessera"],
            },
            "scope": "Namespaced",
            "versions": [version],
        },
    }


def render(document: dict[str, Any]) -> str:
    """YAML text of a generated CRD, with a header that says where it comes from."""
    header = "# Generated by `make crds` (tessera_operator/crdgen.py) from the pydantic types. Do not edit.\n"
    return header + yaml.safe_dump(document, sort_keys=False, width=120, allow_unicode=True)


def generated_files() -> dict[str, str]:
    """File name (under crds/) to content, for every kind."""
    return {f"{GROUP}_{spec.plural}.yaml": render(crd(spec)) for spec in CRDS}


def crd_by_kind(kind: str) -> dict[str, Any]:
    """The generated CRD of one kind (used by offline validation)."""
    for spec in CRDS:
        if spec.kind == kind:
            return crd(spec)
    raise KeyError(kind)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="crds", help="directory to write the CRDs to")
    parser.add_argument("--check", action="store_true", help="exit 1 if the files differ from the code")
    args = parser.parse_args(argv)
    out = Path(args.out)
    drift = []
    for name, text in generated_files().items():
        path = out / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                drift.append(str(path))
        else:
            out.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if drift:
        print("CRDs differ from the pydantic types; run `make crds`: " + ", ".join(drift), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
