"""The CRDs are generated from the pydantic types, are structural, and are committed without drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tessera_operator import crdgen

ROOT = Path(__file__).resolve().parents[2]


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found.extend(_walk(value, f"{path}/{key}"))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_walk(value, f"{path}[{index}]"))
    return found


def test_committed_crds_match_the_code() -> None:
    for name, text in crdgen.generated_files().items():
        committed = ROOT / "crds" / name
        assert committed.exists(), f"{committed} is missing: run `make crds`"
        assert committed.read_text() == text, f"{committed} drifted from the pydantic types: run `make crds`"


@pytest.mark.parametrize("spec", crdgen.CRDS, ids=lambda s: s.kind)
def test_schemas_are_structural(spec: crdgen.CrdSpec) -> None:
    schema = crdgen.crd(spec)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        assert "anyOf" not in node and "oneOf" not in node, path
        assert "title" not in node, path
        assert node.get("additionalProperties") is not False, path
        if "properties" in node and not path.endswith("/properties"):
            assert node.get("type") == "object", path
        if path.endswith("/properties") or path.endswith("/x-kubernetes-validations"):
            continue
        if isinstance(node.get("items"), dict):
            assert node["type"] == "array", path


def test_model_crd_has_scale_subresource_printer_columns_and_cel() -> None:
    model = yaml.safe_load((ROOT / "crds" / "tessera.dev_models.yaml").read_text())
    version = model["spec"]["versions"][0]
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    names = [c["name"] for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert names == ["Ready", "Replicas", "GPU", "TP", "Stable", "Candidate", "Age"]
    autoscaling = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["autoscaling"]
    rules = [r["rule"] for r in autoscaling["x-kubernetes-validations"]]
    assert "self.minReplicas <= self.maxReplicas" in rules
    assert model["spec"]["names"]["shortNames"] == ["mdl"]


def test_model_evaluation_is_immutable() -> None:
    crd = crdgen.crd_by_kind("ModelEvaluation")
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert {"rule": "self == oldSelf", "message": "the spec of a ModelEvaluation is immutable",
            "reason": "FieldValueForbidden"} in schema["properties"]["spec"]["x-kubernetes-validations"]
    status_rules = schema["properties"]["status"]["x-kubernetes-validations"]
    assert any("oldSelf.result" in r["rule"] for r in status_rules)


def test_field_docstrings_become_descriptions() -> None:
    schema = crdgen.type_schema(crdgen.CRDS[0].spec_type)
    min_replicas = schema["properties"]["autoscaling"]["properties"]["minReplicas"]
    assert "scale to zero" in min_replicas["description"]
    assert min_replicas["minimum"] == 0 and min_replicas["default"] == 1


def test_committed_reference_doc_matches_the_code() -> None:
    from tessera_operator import docgen

    assert (ROOT / "docs" / "reference.md").read_text() == docgen.render(), "run `make crds`"
