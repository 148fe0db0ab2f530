"""GitOps support: Argo CD health checks run by a real Lua interpreter, kstatus agreement, examples.

The status objects are the fixtures in fixtures/gitops-health.yaml: the states the operator
writes, each validated against the API types, with the health each reader must report.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from gitops_health import (
    HEALTH_DIR,
    INTERPRETERS,
    ROOT,
    LuaMissingError,
    kstatus,
    lua_interpreter,
    run_lua_health,
)
from pydantic import BaseModel

from tessera_operator.api.v1alpha1.evaluation import EvaluationSuite, ModelEvaluation
from tessera_operator.api.v1alpha1.model import Model
from tessera_operator.devcluster.binaries import component_dir

FIXTURES = yaml.safe_load((Path(__file__).parent / "fixtures" / "gitops-health.yaml").read_text())
KINDS: dict[str, tuple[str, str, type[BaseModel]]] = {
    "models": ("Model", "model-health.lua", Model),
    "evaluationSuites": ("EvaluationSuite", "evaluationsuite-health.lua", EvaluationSuite),
    "modelEvaluations": ("ModelEvaluation", "modelevaluation-health.lua", ModelEvaluation),
}
EXAMPLE_TYPES: dict[str, type[BaseModel]] = {"Model": Model, "EvaluationSuite": EvaluationSuite}
CASES = [
    pytest.param(group, case, id=f"{KINDS[group][0]}: {case['case']}")
    for group in KINDS
    for case in FIXTURES[group]
]


def _object(group: str, case: dict[str, Any]) -> dict[str, Any]:
    kind = KINDS[group][0]
    return {"apiVersion": "tessera.dev/v1alpha1", "kind": kind, **case["object"]}


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_lua_interpreters_are_installed(interpreter: str) -> None:
    try:
        lua_interpreter(interpreter)
    except LuaMissingError as error:
        pytest.fail(str(error))


@pytest.mark.parametrize(("group", "case"), CASES)
def test_fixtures_are_valid_api_objects(group: str, case: dict[str, Any]) -> None:
    KINDS[group][2].model_validate(_object(group, case))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
@pytest.mark.parametrize(("group", "case"), CASES)
def test_argocd_health(group: str, case: dict[str, Any], interpreter: str) -> None:
    health = run_lua_health(HEALTH_DIR / KINDS[group][1], _object(group, case), interpreter)
    assert health.status == case["argocd"], f"{case['case']}: {health}"
    assert health.message and health.message != "nil", "a health check always says why"


@pytest.mark.parametrize(("group", "case"), CASES)
def test_kstatus_reader(group: str, case: dict[str, Any]) -> None:
    assert kstatus(_object(group, case)).status == case["kstatus"], case["case"]


@pytest.mark.parametrize(("group", "case"), CASES)
def test_argocd_and_kstatus_agree(group: str, case: dict[str, Any]) -> None:
    """Healthy in Argo CD means Current for Flux; in progress for Flux is never Healthy in Argo CD.

    The readers differ only where documented (docs/gitops.md): before the operator's first status
    kstatus has nothing to wait on, and kstatus ignores Degraded while Ready is True.
    """
    obj = _object(group, case)
    argo, flux = run_lua_health(HEALTH_DIR / KINDS[group][1], obj).status, kstatus(obj).status
    if flux == "Terminating":
        return
    if argo == "Healthy":
        assert flux == "Current"
    if flux == "InProgress":
        assert argo in ("Progressing", "Degraded")
    if flux == "Current" and argo != "Healthy":
        assert _documented_difference(group, obj, argo), case["case"]


def _condition_true(obj: dict[str, Any], kind: str) -> bool:
    conditions = (obj.get("status") or {}).get("conditions") or []
    return any(c["type"] == kind and c["status"] == "True" for c in conditions)


def _documented_difference(group: str, obj: dict[str, Any], argo: str) -> bool:
    """Where kstatus says Current but Argo CD does not, for a reason docs/gitops.md gives."""
    if "status" not in obj:
        return argo == "Progressing"  # kstatus has nothing to wait on before the first status
    if group == "modelEvaluations":
        return argo == "Degraded"  # finished (Current) without a Pass verdict
    if argo == "Degraded":
        return _condition_true(obj, "Degraded")  # kstatus ignores Degraded while Ready is True
    return argo == "Progressing" and _condition_true(obj, "Progressing")  # serving, rollout under way


def test_stale_generation_overrides_ready() -> None:
    """A Ready condition counts only once the operator has observed the Model's generation."""
    case = next(c for c in FIXTURES["models"] if c["case"] == "serving")
    obj = _object("models", case)
    obj["metadata"] = {**obj["metadata"], "generation": 2}
    assert run_lua_health(HEALTH_DIR / "model-health.lua", obj).status == "Progressing"
    assert kstatus(obj).status == "InProgress"
    obj["status"] = {**obj["status"], "observedGeneration": 2}  # conditions still say generation 1
    assert run_lua_health(HEALTH_DIR / "model-health.lua", obj).status == "Progressing"
    assert kstatus(obj).status == "InProgress"


def test_argocd_cm_snippet_embeds_the_scripts() -> None:
    snippet = yaml.safe_load((ROOT / "examples" / "gitops" / "argocd-cm-health.yaml").read_text())
    for kind, file, _ in KINDS.values():
        embedded = snippet["data"][f"resource.customizations.health.tessera.dev_{kind}"]
        assert embedded == (HEALTH_DIR / file).read_text(), f"{kind}: run hack/gen-chart-assets.py"
    check = subprocess.run([sys.executable, str(ROOT / "hack" / "gen-chart-assets.py"), "--check"],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_gitops_examples() -> None:
    gitops = ROOT / "examples" / "gitops"
    application = _documents(gitops / "argocd-application.yaml")
    kinds = {d["kind"] for d in application}
    assert "Application" in kinds
    for app in (d for d in application if d["kind"] == "Application"):
        sync = app["spec"]["syncPolicy"]
        # Server-side apply, so fields the operator or an HPA own never show as drift.
        assert "ServerSideApply=true" in sync["syncOptions"]
    flux = _documents(gitops / "flux-kustomization.yaml")
    kustomizations = [d for d in flux if d["kind"] == "Kustomization"]
    assert kustomizations and all(k["spec"]["wait"] or k["spec"].get("healthChecks") for k in kustomizations)
    models_dir = gitops / "models"
    kustomization = yaml.safe_load((models_dir / "kustomization.yaml").read_text())
    models = [_documents(models_dir / name) for name in kustomization["resources"]]
    assert len(models) >= 2
    for documents in models:
        for document in documents:
            if document["kind"] == "Namespace":
                continue
            EXAMPLE_TYPES[document["kind"]].model_validate(document)


def test_models_kustomization_builds() -> None:
    """`kubectl kustomize` (what Argo CD and Flux run) builds the Models into their namespace."""
    folder = component_dir("kubernetes")
    if not (folder / ".complete").is_file():
        pytest.fail(f"kubectl is not built ({folder}): run `hack/build-binaries.sh kubernetes`")
    built = subprocess.run([str(folder / "kubectl"), "kustomize", str(ROOT / "examples" / "gitops" / "models")],
                           capture_output=True, text=True, timeout=60, check=False)
    assert built.returncode == 0, built.stderr
    documents = [d for d in yaml.safe_load_all(built.stdout) if d]
    models = [d for d in documents if d["kind"] == "Model"]
    assert {m["metadata"]["name"] for m in models} == {"smollm2", "smollm2-on-demand"}
    for document in documents:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "models"
            EXAMPLE_TYPES[document["kind"]].model_validate(document)
