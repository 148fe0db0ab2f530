"""Generate the API reference (docs/reference.md) from the pydantic types, like the CRDs.

`make crds` writes it; a unit test fails when it drifts from the code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tessera_operator.crdgen import CRDS, crd

HEADER = """# API reference: tessera.dev/v1alpha1

Generated from the pydantic types in `operator/tessera_operator/api/v1alpha1` by `make crds`.
Do not edit. Every field below is checked by the apiserver (structural schema and CEL rules) and
offline by `tessera validate`.
"""


def _type_of(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "object")
    if kind == "array":
        return f"[]{_type_of(schema.get('items', {}))}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"map[string]{_type_of(schema['additionalProperties'])}"
    if "enum" in schema:
        return " \\| ".join(f"`{value}`" for value in schema["enum"])
    return str(kind)


def _constraints(schema: dict[str, Any]) -> str:
    parts = []
    if "default" in schema and schema["default"] not in ({}, []):
        parts.append(f"default `{schema['default']}`")
    for key, label in (("minimum", "≥"), ("maximum", "≤")):
        if key in schema:
            parts.append(f"{label} {schema[key]}")
    if "pattern" in schema:
        parts.append("pattern-checked")
    for rule in schema.get("x-kubernetes-validations", []):
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def _rows(schema: dict[str, Any], path: str, required: set[str]) -> list[str]:
    rows = []
    for name, sub in schema.get("properties", {}).items():
        field = f"{path}.{name}" if path else name
        description = " ".join(str(sub.get("description", "")).split()).replace("|", "\\|")
        flag = " (required)" if name in required else ""
        rows.append(f"| `{field}`{flag} | {_type_of(sub)} | {description} | {_constraints(sub)} |")
        target = sub.get("items") if sub.get("type") == "array" else sub
        if isinstance(target, dict) and "properties" in target:
            suffix = "[]" if sub.get("type") == "array" else ""
            rows.extend(_rows(target, field + suffix, set(target.get("required", []))))
    return rows


def render() -> str:
    """The whole reference page."""
    out = [HEADER]
    for spec in CRDS:
        document = crd(spec)
        schema = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        out.append(f"\n## {spec.kind}\n\n{spec.description}\n")
        out.append(f"Short names: {', '.join(spec.short_names)}. Rules on the whole object: "
                   + ("; ".join(r["message"] for r in spec.root_rules) or "none") + ".\n")
        for part in ("spec", "status"):
            if part not in schema["properties"]:
                continue
            sub = schema["properties"][part]
            out.append(f"\n### {spec.kind}.{part}\n\n| Field | Type | Description | Constraints |\n|---|---|---|---|")
            rules = "; ".join(r["message"] for r in sub.get("x-kubernetes-validations", []))
            if rules:
                out.append(f"| `{part}` | object | (the whole {part}) | rule: {rules} |")
            out.extend(_rows(sub, part, set(sub.get("required", []))))
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="docs/reference.md")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    path = Path(args.out)
    text = render()
    if args.check:
        if not path.exists() or path.read_text() != text:
            print(f"{path} differs from the pydantic types; run `make crds`", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
