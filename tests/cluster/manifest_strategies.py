"""Hypothesis strategies for Tessera manifests (Model, EvaluationSuite, ModelEvaluation), valid and
invalid, for the bad-input tests against the real apiserver.

Valid manifests are drawn field by field within the bounds of the pydantic API types. Invalid ones
start from a valid manifest and break exactly one thing, chosen from the generated CRD schema (which
comes from the same pydantic types): a wrong JSON type, a number out of range or beyond int64, a
bad enum value, a string that is too long, empty or does not match its pattern (bad quantities,
source URIs, durations, names), a missing required field, an unknown field, too many items; or
one of the CEL rules is violated (min > max, cpu on vLLM, canary weights, task data sources, ...).
Each case records the field path the apiserver must name when it refuses the manifest.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from tessera_operator.api.v1alpha1 import API_VERSION
from tessera_operator.api.v1alpha1.model import RESERVED_ENGINE_FLAGS
from tessera_operator.crdgen import MAX_MODEL_NAME, crd_by_kind
from tessera_operator.validation import go_pattern

Json = dict[str, Any]
Schema = dict[str, Any]
Path = tuple[str | int, ...]
INT64_MAX = 2**63 - 1
GPU_TYPES = ("H100-80GB", "A100-80GB", "L4", "L40S", "B200", "MI300X")
# No node carries this label: pods of Models that use it stay Pending (Unschedulable), so valid
# transformers (CPU) Models never start a real engine process on the shared machine.
NOWHERE = {"tessera.dev/test-nowhere": "true"}
TASK_KINDS = ("multipleChoice", "exactMatch", "perplexity", "counterfactualBias", "latency")
BUILTINS = ("arithmetic", "facts", "prose", "bias-names", "bias-pronouns")


@dataclass(frozen=True)
class Case:
    """One manifest to send, and what the apiserver must do with it."""

    kind: str
    manifest: Json
    mutation: str
    """`valid`, or what was broken (e.g. `above maximum`, `cel: minReplicas > maxReplicas`)."""
    field: str | None
    """The field path a refusal must name (None for a valid manifest)."""
    must_reject: bool
    """False for valid manifests and for changes the apiserver may accept (nulls, integral floats)."""

    @property
    def name(self) -> str:
        return str(self.manifest.get("metadata", {}).get("name", ""))


def path_text(path: Path) -> str:
    """`spec.placement.tolerations[0].effect`, as the apiserver writes field paths."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


# ----------------------------------------------------------------------------- valid building blocks
dns_label = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,14}[a-z0-9])?\Z")
hub_part = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,24}\Z")
key_part = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,30}\Z")
short_text = st.text(st.characters(codec="utf-8"), max_size=40)
env_name = st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_.-]{0,20}\Z")
# Keys the schema takes (at most 317 characters) but the pod validation may not: such Models end
# Degraded (ApplyFailed) with the apiserver's words.
label_key = st.one_of(st.from_regex(r"\A([a-z0-9]{1,10}\.)?[a-z0-9]{1,10}/[A-Za-z0-9][-A-Za-z0-9_.]{0,20}\Z"),
                      st.from_regex(r"\A[A-Za-z0-9][-A-Za-z0-9_.]{0,20}\Z"), short_text.filter(bool))
# Image references the schema's grammar takes ([registry[:port]/]path[:tag][@digest]); the rest is
# covered by the schema breakages ("pattern mismatch").
image_ref = st.from_regex(r"\A([a-z0-9]{1,8}(\.[a-z0-9]{1,8}){0,2}(:[0-9]{1,5})?/)?[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}"
                          r"(/[a-z0-9]{1,8}){0,2}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,20})?(@sha256:[0-9a-f]{64})?\Z")
duration = st.from_regex(r"\A([1-9][0-9]{0,2}(\.[0-9])?(ms|s|m|h)){1,2}\Z")

source_uri = st.one_of(
    st.builds(lambda a, b: f"hf://{a}/{b}", hub_part, hub_part),
    st.builds(lambda a, b: f"s3://{a}/{b}", dns_label, key_part),
    st.builds(lambda a, b: f"gs://{a}/{b}", dns_label, key_part),
    st.builds(lambda a, b: f"pvc://{a}/{b}", dns_label, key_part),
    st.builds(lambda a: f"oci://registry.invalid/{a}:1", dns_label),
    st.builds(lambda a: f"file:///models/{a}", key_part),
    st.builds(lambda a: f"pkg://no_such_package/{a}", key_part),
)


REAL_ARCHITECTURES: tuple[Json, ...] = (  # an 8B, a 0.5B and a 70B llama-like shape
    {"modelType": "llama", "hiddenSize": 4096, "numHiddenLayers": 32, "numAttentionHeads": 32,
     "numKeyValueHeads": 8, "intermediateSize": 14336, "vocabSize": 128256, "torchDtype": "bfloat16"},
    {"modelType": "qwen2", "hiddenSize": 896, "numHiddenLayers": 24, "numAttentionHeads": 14,
     "numKeyValueHeads": 2, "intermediateSize": 4864, "vocabSize": 151936, "tieWordEmbeddings": True},
    {"modelType": "llama", "hiddenSize": 8192, "numHiddenLayers": 80, "numAttentionHeads": 64,
     "numKeyValueHeads": 8, "intermediateSize": 28672, "vocabSize": 128256, "maxPositionEmbeddings": 131072},
)


@st.composite
def architectures(draw: st.DrawFn) -> Json:
    """Architectures within the types' bounds: real-looking shapes and odd ones (the planner must cope)."""
    known = draw(st.sampled_from([None, *REAL_ARCHITECTURES]))
    if known is not None:
        return dict(known)
    heads = draw(st.sampled_from([1, 2, 8, 16, 32, 64, 128]) | st.integers(1, 200))
    arch: Json = {
        "hiddenSize": draw(st.sampled_from([512, 2048, 4096, 8192]) | st.integers(1, 20_000)),
        "numHiddenLayers": draw(st.integers(1, 128)),
        "numAttentionHeads": heads,
        "intermediateSize": draw(st.integers(1, 60_000)),
        "vocabSize": draw(st.sampled_from([32_000, 128_256]) | st.integers(1, 300_000)),
    }
    optional: dict[str, st.SearchStrategy[Any]] = {
        "modelType": st.sampled_from(["llama", "mistral", "qwen2", "mixtral", "deepseek_v3", "unknown"]),
        "numKeyValueHeads": st.sampled_from([1, heads]) | st.integers(1, 256),
        "headDim": st.integers(1, 512),
        "tieWordEmbeddings": st.booleans(),
        "maxPositionEmbeddings": st.integers(1, 1_000_000),
        "numExperts": st.integers(1, 256),
        "numExpertsPerTok": st.integers(1, 16),
        "moeIntermediateSize": st.integers(1, 20_000),
        "kvLoraRank": st.integers(1, 1024),
        "qkRopeHeadDim": st.integers(1, 128),
        "torchDtype": st.sampled_from(["bfloat16", "float16", "float32", "int4", ""]),
    }
    for key in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)):
        arch[key] = draw(optional[key])
    return arch


qualified_name = st.from_regex(r"\A([a-z0-9]{1,10}(\.[a-z0-9]{1,10})?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?\Z")


@st.composite
def tolerations(draw: st.DrawFn) -> Json:
    """Tolerations the pod validation accepts (the CRD's rules mirror it)."""
    keyed = draw(st.booleans())
    found: Json = {"key": draw(qualified_name)} if keyed else {}
    operator = draw(st.sampled_from(["Exists", "Equal", None])) if keyed else "Exists"
    if operator is not None:
        found["operator"] = operator
    if operator != "Exists" and draw(st.booleans()):
        found["value"] = draw(dns_label)
    effect = draw(st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute", None]))
    if effect is not None:
        found["effect"] = effect
    if effect == "NoExecute" and draw(st.booleans()):
        found["tolerationSeconds"] = draw(st.integers(0, 10**6))
    return found


@st.composite
def model_specs(draw: st.DrawFn) -> Json:
    """A spec the apiserver accepts; the operator must make it Ready or say why it is Degraded."""
    transformers = draw(st.integers(0, 9)) == 0
    fmt = draw(st.sampled_from(["safetensors", "gguf"]))
    source: Json = {"uri": draw(source_uri)}
    if fmt == "gguf":
        source |= {"format": "gguf", "file": draw(key_part)}
    elif draw(st.booleans()):
        source["format"] = "safetensors"
    if draw(st.integers(0, 4)) > 0:
        source["architecture"] = draw(architectures())
    if draw(st.booleans()):
        source["revision"] = draw(st.from_regex(r"\A[0-9a-f]{7,40}\Z") | short_text)
    if draw(st.integers(0, 4)) == 0:
        source["credentialsSecretRef"] = {"name": draw(dns_label), "key": draw(env_name)}
    engine: Json = {"name": "transformers" if transformers else draw(st.sampled_from(["vllm", None]))}
    if draw(st.integers(0, 3)) == 0:
        engine["args"] = draw(st.lists(st.sampled_from(["--enforce-eager", "--seed=1", "--swap-space", "4"])
                                       | short_text, max_size=4))
    if draw(st.integers(0, 3)) == 0:
        engine["env"] = draw(st.dictionaries(env_name, short_text, max_size=3))
    if draw(st.integers(0, 5)) == 0:
        engine["image"] = draw(st.sampled_from(["example.invalid/tessera:1", "localhost:5000/vllm"]) | image_ref)
    placement: Json = {}
    if transformers:
        placement |= {"accelerators": ["cpu"], "nodeSelector": NOWHERE}
        if draw(st.booleans()):
            placement["cpu"] = {"cpu": draw(st.from_regex(r"\A[0-9]{1,3}(\.[0-9]{1,3})?m?\Z")),
                                "memory": draw(st.from_regex(r"\A[0-9]{1,4}(\.[0-9])?(Ki|Mi|Gi|k|M|G)?\Z"))}
    else:
        if draw(st.booleans()):
            placement["accelerators"] = draw(st.lists(st.sampled_from(GPU_TYPES), unique=True, max_size=3))
        if fmt == "gguf":
            placement["quantization"] = "gguf"
        elif draw(st.integers(0, 3)) == 0:
            placement["quantization"] = draw(st.sampled_from(["none", "fp8", "int8", "awq", "gptq"]))
        extra: dict[str, st.SearchStrategy[Any]] = {
            "tensorParallel": st.sampled_from([1, 2, 4, 8]) | st.integers(1, 64),
            "maxModelLen": st.integers(16, 10_000_000),
            "kvCacheDtype": st.sampled_from(["auto", "fp8", "fp8_e4m3", "fp8_e5m2"]),
            "gpuMemoryUtilization": st.floats(0.01, 0.99),
            "nodeSelector": st.dictionaries(label_key, st.sampled_from(["true", "a", ""]), max_size=2),
            "tolerations": st.lists(tolerations(), max_size=2),
            "priorityClassName": dns_label,
        }
        for key in draw(st.lists(st.sampled_from(sorted(extra)), unique=True, max_size=3)):
            placement[key] = draw(extra[key])
    low = draw(st.integers(0, 2))
    high = draw(st.integers(max(low, 1), 4))
    autoscaling: Json = {"minReplicas": low, "maxReplicas": high,
                         "policy": draw(st.sampled_from(["tessera", "static", "external"]))}
    if draw(st.booleans()):
        autoscaling["scaleToZeroAfter"] = draw(duration)
    spec: Json = {"source": source, "engine": {k: v for k, v in engine.items() if v is not None},
                  "placement": placement, "autoscaling": autoscaling}
    if draw(st.booleans()):
        spec["replicas"] = draw(st.integers(low, high))
    if draw(st.integers(0, 3)) == 0:
        spec["slo"] = draw(st.fixed_dictionaries({}, optional={
            "timeToFirstTokenSeconds": st.floats(0.001, 600), "timePerOutputTokenSeconds": st.floats(0.001, 10),
            "percentile": st.integers(50, 100), "throughputTokensPerSecond": st.floats(0.1, 1e6)}))
    if draw(st.integers(0, 3)) == 0:
        weights = sorted(draw(st.sets(st.integers(1, 100), max_size=4)))
        spec["rollout"] = {"evaluationSuites": draw(st.lists(dns_label, max_size=2)),
                           "canarySteps": [{"weight": w, "duration": draw(duration)} for w in weights]}
    if draw(st.integers(0, 3)) == 0:
        spec["servedModelName"] = draw(short_text)
        spec["aliases"] = draw(st.lists(short_text, max_size=3))
    return spec


@st.composite
def evaluation_tasks(draw: st.DrawFn, name: str) -> Json:
    kind = draw(st.sampled_from(TASK_KINDS))
    task: Json = {"name": name, "kind": kind}
    if kind != "latency" or draw(st.booleans()):
        source = draw(st.sampled_from(["inline", "configMapRef", "file", "builtin"]))
        task["data"] = {
            "inline": [{"prompt": "2+2?", "answer": "4", "choices": ["3", "4"], "text": "prose"}],
            "configMapRef": {"name": draw(dns_label), "key": "items.jsonl"},
            "file": "/data/items.jsonl",
            "builtin": draw(st.sampled_from(BUILTINS)),
        }[source]
        task["data"] = {source: task["data"]}
    if kind == "counterfactualBias":
        task["attribute"] = {"name": "origin", "groups": {"a": ["Emily"], "b": ["Jamal"]}}
    if kind == "latency" and draw(st.booleans()):
        task["latency"] = draw(st.fixed_dictionaries({}, optional={
            "promptTokens": st.integers(1, 131072), "maxTokens": st.integers(1, 8192),
            "requests": st.integers(2, 10000), "concurrency": st.integers(1, 256)}))
    bound = draw(st.sampled_from(["margin", "threshold", "both"]))
    if bound in ("margin", "both"):
        task["margin"] = draw(st.floats(0, 10))
    if bound in ("threshold", "both"):
        task["threshold"] = draw(st.floats(-1e6, 1e6))
    if draw(st.booleans()):
        task["sampleSize"] = draw(st.integers(1, 100000))
    return task


@st.composite
def suite_specs(draw: st.DrawFn) -> Json:
    names = draw(st.lists(dns_label, min_size=1, max_size=4, unique=True))
    spec: Json = {"tasks": [draw(evaluation_tasks(n)) for n in names]}
    if draw(st.booleans()):
        spec["confidence"] = draw(st.floats(0.51, 0.99))
    if draw(st.booleans()):
        spec["timeout"] = draw(duration)
    return spec


@st.composite
def evaluation_specs(draw: st.DrawFn) -> Json:
    def version() -> Json:
        found: Json = {"version": draw(st.from_regex(r"\A[0-9a-f]{10}\Z"))}
        if draw(st.booleans()):
            found["revision"] = draw(short_text)
        if draw(st.booleans()):
            found["endpoint"] = f"http://{draw(dns_label)}.svc:8000/v1"
        return found

    return {"model": draw(dns_label), "candidate": version(), "baseline": version(),
            "suite": {"name": draw(dns_label), "digest": draw(st.from_regex(r"\A[0-9a-f]{64}\Z"))}}


SPECS: dict[str, Callable[[], st.SearchStrategy[Json]]] = {
    "Model": model_specs, "EvaluationSuite": suite_specs, "ModelEvaluation": evaluation_specs,
}


def manifest(kind: str, name: str, spec: Json) -> Json:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec}


# ----------------------------------------------------------------------------- schema-driven breakage
def schema_nodes(value: Any, schema: Schema, path: Path) -> Iterator[tuple[Path, Any, Schema]]:
    """Every value present in the manifest under `path`, with its schema node."""
    yield path, value, schema
    if isinstance(value, dict):
        properties, extra = schema.get("properties"), schema.get("additionalProperties")
        for key, item in value.items():
            if properties and key in properties:
                yield from schema_nodes(item, properties[key], (*path, key))
            elif isinstance(extra, dict):
                yield from schema_nodes(item, extra, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from schema_nodes(item, schema["items"], (*path, index))


def _set(document: Json, path: Path, value: Any) -> None:
    target: Any = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value


def _get(document: Json, path: Path) -> Any:
    target: Any = document
    for part in path:
        target = target[part]
    return target


SAMPLES = {"string": "x", "integer": 7, "number": 2.5, "boolean": True, "object": {"a": 1}, "array": [1]}
COMPATIBLE = {"number": {"integer", "number"}, "integer": {"integer"}}
Breakage = tuple[str, Path, Any, bool, Path]  # what, where to set, value (or DELETE), must reject, path named
DELETE = object()


def _mismatch(expected: str | None, value: str) -> bool:
    return expected is not None and value not in COMPATIBLE.get(expected, {expected})


def not_matching(pattern: str) -> st.SearchStrategy[str]:
    """Strings the apiserver's (RE2) pattern refuses: near misses and arbitrary text."""
    near = st.sampled_from(["", " ", "http://example.com/m", "hf://org", "hf:/org/name", "s3://", "S3://b/k",
                            "hf://a/b\n", "file://relative", "1.5.5", "10 m", "-1", "2Gb", "1e3", "0x10",
                            "Upper_Case", "a..b", "-a", "a-", "10mins", "1m\n", "cpu", "∞"])
    compiled = go_pattern(pattern)
    return (near | st.text(max_size=30)).filter(lambda s: compiled.search(s) is None)


def breakage_options(value: Any, schema: Schema) -> list[str]:
    """The ways the value can be made invalid against its own schema node."""
    kind = schema.get("type")
    options: list[str] = ["wrong type", "null"]
    if kind in ("integer", "number"):
        options += ["below minimum"] * ("minimum" in schema) + ["above maximum"] * ("maximum" in schema)
    if kind == "integer":
        options += ["beyond int64", "fractional number", "integral float"]
    if kind == "string":
        options += ["too long"] * ("maxLength" in schema) + ["too short"] * (schema.get("minLength", 0) > 0)
        options += ["pattern mismatch"] * ("pattern" in schema) + ["not in enum"] * ("enum" in schema)
    if kind == "object" and schema.get("properties"):
        options.append("unknown field")
        if [r for r in schema.get("required", []) if r in value]:
            options.append("missing required")
    if kind == "object" and "maxProperties" in schema:
        options.append("too many properties")
    if kind == "array" and "maxItems" in schema and (value or isinstance(schema.get("items"), dict)):
        options.append("too many items")
    if kind == "array" and schema.get("minItems", 0) > 0:
        options.append("too few items")
    return options


@st.composite
def breakages(draw: st.DrawFn, what: str, path: Path, value: Any, schema: Schema) -> Breakage:
    """Make the value at `path` invalid against its own schema node in the way `what` says."""
    kind = schema.get("type")
    if what == "wrong type":
        other = draw(st.sampled_from([t for t in SAMPLES if _mismatch(kind, t)]))
        return what, path, copy.deepcopy(SAMPLES[other]), True, path
    if what == "null":  # pruned by the apiserver: may pass, or fail a rule of (or a required field in) its parent
        return what, path, None, False, path[:-1]
    if what == "below minimum":
        low = schema["minimum"]
        bad = low if schema.get("exclusiveMinimum") else low - draw(st.integers(1, 10**6) if kind == "integer"
                                                                   else st.floats(1e-3, 1e6))
        return what, path, bad, True, path
    if what == "above maximum":
        high = schema["maximum"]
        bad = high if schema.get("exclusiveMaximum") else high + draw(st.integers(1, 10**6) if kind == "integer"
                                                                     else st.floats(1e-3, 1e6))
        return what, path, bad, True, path
    if what == "beyond int64":
        return what, path, draw(st.integers(INT64_MAX + 1, 2**80) | st.integers(-(2**80), -(2**63) - 1)), True, path
    if what == "fractional number":
        return what, path, draw(st.integers(0, 1000)) + 0.5, True, path
    if what == "integral float":  # accepted by the schema; a CEL rule reading it fails on its parent object
        return what, path, float(value), False, path[:-1]
    if what == "too long":
        length = schema["maxLength"] + draw(st.integers(1, 5) | st.integers(1, 200_000))
        return what, path, draw(st.sampled_from(["x", "é", "\U0001f600"])) * length, True, path
    if what == "too short":
        return what, path, "", True, path
    if what == "pattern mismatch":
        return what, path, draw(not_matching(schema["pattern"])), True, path
    if what == "not in enum":
        bad = draw(st.sampled_from(["", "None", "VLLM", "bogus"]) | short_text)
        return what, path, bad if bad not in schema["enum"] else bad + "!", True, path
    if what == "unknown field":
        properties = schema["properties"]
        name = draw(st.from_regex(r"\A[a-zA-Z][a-zA-Z0-9]{0,15}\Z").filter(lambda n: n not in properties))
        return what, (*path, name), draw(st.sampled_from(list(SAMPLES.values()))), True, (*path, name)
    if what == "missing required":
        name = draw(st.sampled_from([r for r in schema["required"] if r in value]))
        return what, (*path, name), DELETE, True, (*path, name)
    if what == "too many properties":
        keys = [f"K{i}" for i in range(schema["maxProperties"] + draw(st.integers(1, 3)))]
        sample: Any = next(iter(value.values()), "v")  # an entry like the map's own (strings, lists)
        many = {key: copy.deepcopy(sample) for key in keys}
        return what, path, many, True, path
    if what == "too many items":
        item = value[0] if value else "x"
        return what, path, [copy.deepcopy(item) for _ in range(schema["maxItems"] + 1)], True, path
    assert what == "too few items"
    return what, path, [], True, path


def rule_owner(root: Schema, path: Path) -> Path | None:
    """The nearest ancestor of the field at `path` with a CEL rule naming the field (the apiserver names
    that object when the rule cannot read the field's value)."""
    nodes: list[tuple[Path, Schema]] = [((), root)]
    for part in path:
        schema = nodes[-1][1]
        if isinstance(part, int):
            child = schema.get("items")
        else:
            child = (schema.get("properties") or {}).get(part, schema.get("additionalProperties"))
        nodes.append(((*nodes[-1][0], part), child if isinstance(child, dict) else {}))
    name = next((str(p) for p in reversed(path) if isinstance(p, str)), "")
    for prefix, schema in reversed(nodes[:-1]):
        if any(name in rule["rule"] for rule in schema.get("x-kubernetes-validations", [])):
            return prefix
    return None


BREAKAGES = ("wrong type", "null", "below minimum", "above maximum", "beyond int64", "fractional number",
             "integral float", "too long", "too short", "pattern mismatch", "not in enum", "unknown field",
             "missing required", "too many properties", "too many items", "too few items")


@st.composite
def schema_breakages(draw: st.DrawFn, kind: str, document: Json, wanted: str) -> Case:
    """Break one field of a valid manifest in the `wanted` way (another way when no field allows it)."""
    schema = crd_by_kind(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    by_breakage: dict[str, list[tuple[Path, Any, Schema]]] = {}
    for path, value, node in schema_nodes(document["spec"], schema["properties"]["spec"], ("spec",)):
        for option in breakage_options(value, node):
            by_breakage.setdefault(option, []).append((path, value, node))
    chosen = wanted if wanted in by_breakage else draw(st.sampled_from(sorted(by_breakage)))
    path, value, node = draw(st.sampled_from(by_breakage[chosen]))
    what, where, bad, must_reject, named = draw(breakages(chosen, path, value, node))
    if what in ("integral float", "null"):  # refused, if at all, by a rule of an ancestor that reads it
        named = rule_owner(schema, path) or named
    broken = copy.deepcopy(document)
    if bad is DELETE:
        del _get(broken, where[:-1])[where[-1]]
    else:
        _set(broken, where, bad)
    return Case(kind, broken, what, path_text(named), must_reject)


# ----------------------------------------------------------------------------- CEL rule breakage
CelBreak = Callable[[Json], str]


def _min_above_max(m: Json) -> str:
    a = m["spec"]["autoscaling"]
    a["minReplicas"], a["maxReplicas"] = a["maxReplicas"] + 1, a["maxReplicas"]
    m["spec"].pop("replicas", None)
    return "spec.autoscaling.minReplicas"


def _replicas_out_of_bounds(m: Json) -> str:
    m["spec"]["replicas"] = m["spec"]["autoscaling"]["maxReplicas"] + 1
    return "spec.replicas"


def _cpu_on_vllm(m: Json) -> str:
    m["spec"]["engine"]["name"] = "vllm"
    m["spec"]["placement"] = {"accelerators": ["cpu"]}
    return "spec.engine.name"


def _cpu_mixed_with_gpus(m: Json) -> str:
    m["spec"]["engine"]["name"] = "transformers"
    m["spec"]["placement"] = {"accelerators": ["cpu", "L4"]}
    return "spec.placement.accelerators"


def _cpu_with_tensor_parallel(m: Json) -> str:
    m["spec"]["engine"]["name"] = "transformers"
    m["spec"]["placement"] = {"accelerators": ["cpu"], "tensorParallel": 2}
    return "spec.placement.accelerators"


def _gguf_without_file(m: Json) -> str:
    m["spec"]["source"] |= {"format": "gguf", "uri": "hf://org/model"}
    m["spec"]["source"].pop("file", None)
    m["spec"]["placement"]["quantization"] = "gguf"
    return "spec.source.file"


def _gguf_on_vllm(m: Json) -> str:
    m["spec"]["source"] |= {"format": "gguf", "file": "m.gguf"}
    m["spec"]["engine"]["name"] = "vllm"
    m["spec"]["placement"] = {"quantization": "awq"}
    return "spec.source.format"


def _canary_not_increasing(m: Json) -> str:
    m["spec"]["rollout"] = {"canarySteps": [{"weight": 50}, {"weight": 10}]}
    return "spec.rollout.canarySteps"


def _canary_repeated(m: Json) -> str:
    m["spec"]["rollout"] = {"canarySteps": [{"weight": 20}, {"weight": 20}, {"weight": 60}]}
    return "spec.rollout.canarySteps"


def _reserved_flag(m: Json) -> str:
    flag = RESERVED_ENGINE_FLAGS[len(m["metadata"]["name"]) % len(RESERVED_ENGINE_FLAGS)]
    m["spec"]["engine"]["args"] = ["--enforce-eager", f"{flag}=2"]
    return "spec.engine.args"


def _toleration(m: Json, toleration: Json) -> str:
    m["spec"]["placement"]["tolerations"] = [{"key": "a", "operator": "Exists"}, toleration]
    return "spec.placement.tolerations[1]"


def _toleration_without_key_nor_exists(m: Json) -> str:
    return _toleration(m, {"operator": "Equal", "value": "x"}) + ".operator"


def _toleration_exists_with_value(m: Json) -> str:
    return _toleration(m, {"key": "k", "operator": "Exists", "value": "x"}) + ".value"


def _toleration_seconds_without_no_execute(m: Json) -> str:
    return _toleration(m, {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5}) + ".tolerationSeconds"


def _env_name_too_long(m: Json) -> str:
    m["spec"]["engine"]["env"] = {"A" * 257: "1"}
    return "spec.engine.env"


def _node_selector_key_too_long(m: Json) -> str:
    m["spec"]["placement"]["nodeSelector"] = {"k" * 100_000: "v"}
    return "spec.placement.nodeSelector"


def _name_too_long(m: Json) -> str:
    m["metadata"]["name"] = (m["metadata"]["name"] + "-" + "n" * MAX_MODEL_NAME)[: MAX_MODEL_NAME + 1]
    return "metadata.name"


def _name_not_dns(m: Json) -> str:
    m["metadata"]["name"] = m["metadata"]["name"] + "_X"
    return "metadata.name"


def _task(m: Json) -> tuple[Json, str]:
    return m["spec"]["tasks"][0], "spec.tasks[0]"


def _two_data_sources(m: Json) -> str:
    task, at = _task(m)
    task["data"] = {"builtin": "facts", "file": "/data/x.jsonl"}
    return at + ".data"


def _no_data_source(m: Json) -> str:
    task, at = _task(m)
    task["data"] = {}
    return at + ".data"


def _data_missing(m: Json) -> str:
    task, at = _task(m)
    task["kind"] = "exactMatch"
    task.pop("data", None)
    return at + ".data"


def _attribute_missing(m: Json) -> str:
    task, at = _task(m)
    task |= {"kind": "counterfactualBias", "data": {"builtin": "bias-names"}}
    task.pop("attribute", None)
    return at + ".attribute"


def _no_margin_nor_threshold(m: Json) -> str:
    task, at = _task(m)
    task.pop("margin", None)
    task.pop("threshold", None)
    return at + ".margin"


def _duplicate_task_names(m: Json) -> str:
    m["spec"]["tasks"].append(copy.deepcopy(m["spec"]["tasks"][0]))
    return "spec.tasks"


CEL_BREAKS: dict[str, tuple[CelBreak, ...]] = {
    "Model": (_min_above_max, _replicas_out_of_bounds, _cpu_on_vllm, _cpu_mixed_with_gpus, _cpu_with_tensor_parallel,
              _gguf_without_file, _gguf_on_vllm, _canary_not_increasing, _canary_repeated, _reserved_flag,
              _toleration_without_key_nor_exists, _toleration_exists_with_value,
              _toleration_seconds_without_no_execute, _env_name_too_long, _node_selector_key_too_long,
              _name_too_long, _name_not_dns),
    "EvaluationSuite": (_two_data_sources, _no_data_source, _data_missing, _attribute_missing,
                        _no_margin_nor_threshold, _duplicate_task_names, _name_not_dns),
    "ModelEvaluation": (_name_not_dns,),
}


def cel_breakage(kind: str, document: Json, breaker: CelBreak) -> Case:
    """Violate one CEL rule (or the object name rules) of a valid manifest."""
    broken = copy.deepcopy(document)
    field = breaker(broken)
    return Case(kind, broken, "cel: " + breaker.__name__.strip("_").replace("_", " "), field, True)


# ----------------------------------------------------------------------------- cases
def categories(kind: str) -> list[str]:
    """`valid`, `cel:<rule breaker>` and `schema:<breakage>`: each is run with its own examples."""
    return ["valid", *(f"cel:{b.__name__}" for b in CEL_BREAKS[kind]), *(f"schema:{b}" for b in BREAKAGES)]


@st.composite
def cases(draw: st.DrawFn, kind: str, name: str, category: str) -> Case:
    """A manifest of `kind` named `name`: valid, or broken in the one place `category` says."""
    document = manifest(kind, name, draw(SPECS[kind]()))
    if category == "valid":
        return Case(kind, document, "valid", None, False)
    group, _, which = category.partition(":")
    if group == "cel":
        return cel_breakage(kind, document, next(b for b in CEL_BREAKS[kind] if b.__name__ == which))
    assert group == "schema", category
    return draw(schema_breakages(kind, document, which))
