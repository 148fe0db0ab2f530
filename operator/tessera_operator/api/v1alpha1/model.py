"""The `Model` kind: one LLM that Tessera sizes, serves, autoscales and rolls out."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from .base import (
    API_VERSION,
    CONDITIONS_EXTRA,
    DNS_SUBDOMAIN_PATTERN,
    DURATION_PATTERN,
    LABEL_VALUE_PATTERN,
    ApiObject,
    Condition,
    SecretKeyRef,
    Toleration,
    cel,
    k8s_extra,
)

# Engine flags that Tessera derives from the plan or the pod; a user passing them would fight the
# operator, so the schema refuses them (and the vLLM launcher refuses them again at run time).
RESERVED_ENGINE_FLAGS: tuple[str, ...] = (
    "--tensor-parallel-size",
    "--pipeline-parallel-size",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--quantization",
    "--kv-cache-dtype",
    "--served-model-name",
    "--port",
    "--host",
    "--model",
    "--data-parallel-size",
    "--distributed-executor-backend",
)

SOURCE_URI_PATTERN = r"^(pkg://[A-Za-z0-9_.]+/\S+|hf://[^/\s]+/[^/\s]+|s3://[^/\s]+/\S*|gs://[^/\s]+/\S*|pvc://[^/\s]+(/\S*)?|oci://\S+|file:///\S*)$"
# A container image reference, as registries and kubelets parse it: [registry[:port]/]path[:tag][@digest],
# lowercase path components. Anything else could never be pulled (and is refused before it reaches a Pod).
IMAGE_REFERENCE_PATTERN = (
    r"^([a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?/)?"
    r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)


def _no_reserved_flags_rule() -> str:
    checks = " || ".join(f"a == '{flag}' || a.startsWith('{flag}=')" for flag in RESERVED_ENGINE_FLAGS)
    return f"self.all(a, !({checks}))"


class Architecture(ApiObject):
    """The config.json fields the planner needs, for planning without downloading the model."""

    model_type: str | None = Field(default=None, max_length=64)
    """config.json model_type (llama, mistral, qwen2, qwen3, gemma2, gemma3_text, mixtral, qwen2_moe, deepseek_v3)."""
    hidden_size: int = Field(ge=1)
    """Width of the residual stream."""
    num_hidden_layers: int = Field(ge=1)
    """Number of transformer layers."""
    num_attention_heads: int = Field(ge=1)
    """Query heads per layer."""
    num_key_value_heads: int | None = Field(default=None, ge=1)
    """Key/value heads per layer (grouped-query attention); defaults to num_attention_heads."""
    head_dim: int | None = Field(default=None, ge=1)
    """Per-head dimension; defaults to hidden_size / num_attention_heads."""
    intermediate_size: int = Field(ge=1)
    """MLP width (dense layers)."""
    vocab_size: int = Field(ge=1)
    """Vocabulary size."""
    tie_word_embeddings: bool = False
    """Whether the output head shares the embedding matrix."""
    max_position_embeddings: int | None = Field(default=None, ge=1)
    """Longest context the model was trained for."""
    num_experts: int | None = Field(default=None, ge=1)
    """Routed experts per MoE layer (num_local_experts / n_routed_experts)."""
    num_experts_per_tok: int | None = Field(default=None, ge=1)
    """Experts active per token."""
    moe_intermediate_size: int | None = Field(default=None, ge=1)
    """Width of each expert's MLP."""
    n_shared_experts: int | None = Field(default=None, ge=0)
    """Always-active shared experts per MoE layer."""
    first_k_dense_replace: int | None = Field(default=None, ge=0)
    """Number of leading dense (non-MoE) layers."""
    kv_lora_rank: int | None = Field(default=None, ge=1)
    """Multi-head latent attention: rank of the compressed KV latent (cached once per token)."""
    qk_rope_head_dim: int | None = Field(default=None, ge=1)
    """Multi-head latent attention: rotary part of each head, cached with the latent."""
    qk_nope_head_dim: int | None = Field(default=None, ge=1)
    """Multi-head latent attention: non-rotary query/key part per head."""
    v_head_dim: int | None = Field(default=None, ge=1)
    """Multi-head latent attention: value dimension per head."""
    q_lora_rank: int | None = Field(default=None, ge=1)
    """Multi-head latent attention: rank of the compressed query."""
    torch_dtype: str | None = Field(default=None, max_length=32)
    """Dtype the weights are stored in (bfloat16, float16, float32)."""


class ModelSource(ApiObject):
    """Where the weights come from."""

    uri: str = Field(min_length=1, max_length=2048, pattern=SOURCE_URI_PATTERN)
    """hf://org/name, s3://bucket/prefix, gs://bucket/prefix, pvc://claim/path, oci://ref, file:///path (dev and edge nodes) or pkg://python_package/file (weights shipped in an installed Python package, for tests and offline demos)."""
    revision: str | None = Field(default=None, max_length=256)
    """A branch, tag or commit (hf://) or object version; part of the version hash."""
    format: Literal["safetensors", "gguf"] = "safetensors"
    """Weight file format."""
    file: str | None = Field(default=None, max_length=512)
    """For gguf: the file inside the source to load."""
    credentials_secret_ref: SecretKeyRef | None = None
    """Secret key holding a token or credentials file for the source; mounted, never copied."""
    architecture: Architecture | None = None
    """Inline architecture for planning without access to the weights."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("self.format != 'gguf' || has(self.file) || self.uri.endsWith('.gguf')",
                    "a gguf source names its file (spec.source.file) or points at a .gguf file", field_path=".file"),
            ]
        ),
    )


class EngineSpec(ApiObject):
    """How the model is served."""

    name: Literal["vllm", "transformers"] = "vllm"
    """vllm on GPUs; transformers (Tessera's torch engine) on CPU for tests, development and edge nodes."""
    image: str | None = Field(default=None, max_length=512, pattern=IMAGE_REFERENCE_PATTERN)
    """Override of the runtime image: a reference such as `registry.example/vllm:v1` or `repo@sha256:...`."""
    args: list[str] = Field(
        default_factory=list,
        max_length=64,
        json_schema_extra={
            "items": {"type": "string", "maxLength": 512},
            **k8s_extra(
                x_kubernetes_validations=[
                    cel(_no_reserved_flags_rule(),
                        "engine.args may not set flags that Tessera derives from the plan: "
                        + ", ".join(RESERVED_ENGINE_FLAGS)),
                ]
            ),
        },
    )
    """Extra engine arguments, passed through (flags Tessera sets itself are refused)."""
    env: dict[str, Annotated[str, Field(max_length=32768)]] = Field(
        default_factory=dict, max_length=64,
        json_schema_extra=k8s_extra(x_kubernetes_validations=[
            cel("self.all(k, size(k) <= 256)", "environment variable names are at most 256 characters")]),
    )
    """Extra environment variables for the engine container."""


class CpuResources(ApiObject):
    """CPU and memory for engine pods on CPU nodes (planned when omitted)."""

    cpu: str | None = Field(default=None, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?m?$")
    """CPU request and limit, e.g. "2" or "1500m"."""
    memory: str | None = Field(default=None, max_length=32, pattern=r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$")
    """Memory request and limit, e.g. "2Gi"."""


class Placement(ApiObject):
    """Where and how the model is placed; everything left out is chosen by the planner."""

    accelerators: list[str] = Field(
        default_factory=list, max_length=16,
        json_schema_extra={"items": {"type": "string", "maxLength": 64}},
    )
    """Accelerator preference, most preferred first: GPU catalogue names (H100-80GB, A100-80GB, L4, ...) or cpu. Empty: any GPU the cluster offers."""
    tensor_parallel: int | None = Field(default=None, ge=1, le=64)
    """Override of the tensor-parallel size (checked by the planner)."""
    pipeline_parallel: int | None = Field(default=None, ge=1, le=64)
    """Override of the pipeline-parallel size (checked by the planner)."""
    max_model_len: int | None = Field(default=None, ge=16, le=10_000_000)
    """Longest request (prompt + output tokens) to support; default: the largest that fits, capped at the model's limit."""
    quantization: Literal["none", "fp8", "int8", "awq", "gptq", "gguf"] | None = None
    """Weight quantization; default: what the weights are stored in."""
    kv_cache_dtype: Literal["auto", "fp8", "fp8_e4m3", "fp8_e5m2"] | None = None
    """KV-cache dtype; auto uses the model dtype."""
    gpu_memory_utilization: float | None = Field(default=None, gt=0.0, le=0.99)
    """Fraction of each GPU's memory the engine may use (vLLM's --gpu-memory-utilization)."""
    node_selector: dict[str, Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]] = Field(
        default_factory=dict, max_length=32,
        json_schema_extra=k8s_extra(x_kubernetes_validations=[
            cel("self.all(k, size(k) <= 317)", "node selector keys are label keys: at most 317 characters")]),
    )
    """Extra node selector for the model's pods."""
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32)
    """Extra tolerations for the model's pods."""
    priority_class_name: str | None = Field(default=None, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """PriorityClass of the model's pods."""
    cpu: CpuResources | None = None
    """Resources for CPU placement."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("!self.accelerators.exists(a, a == 'cpu') || size(self.accelerators) == 1",
                    "cpu cannot be mixed with GPU types in placement.accelerators", field_path=".accelerators"),
                cel("!self.accelerators.exists(a, a == 'cpu') || (!has(self.tensorParallel) && !has(self.pipelineParallel))",
                    "tensorParallel and pipelineParallel apply to GPU placement only", field_path=".accelerators"),
            ]
        ),
    )


class ServiceLevelObjective(ApiObject):
    """Latency and throughput the model must meet; the planner and the autoscaler aim at it."""

    time_to_first_token_seconds: float | None = Field(default=None, gt=0, le=600)
    """Target time to first token at the given percentile, in seconds."""
    time_per_output_token_seconds: float | None = Field(default=None, gt=0, le=10)
    """Target time per output token at the given percentile, in seconds."""
    percentile: int = Field(default=95, ge=50, le=100)
    """Percentile the latency targets apply to."""
    throughput_tokens_per_second: float | None = Field(default=None, gt=0)
    """Optional sustained output tokens per second across replicas."""


class AutoscalingTargets(ApiObject):
    """Targets of the tessera policy (defaults are sensible; tune only with evidence)."""

    kv_cache_utilization: float | None = Field(default=None, gt=0, le=1)
    """KV-cache usage per replica to aim for."""
    queue_per_replica: float | None = Field(default=None, ge=0)
    """Waiting requests per replica that trigger a scale-up."""
    concurrency_per_replica: float | None = Field(default=None, gt=0)
    """Running requests per replica to aim for."""
    max_scale_downs_per_hour: int | None = Field(default=None, ge=1, le=720)
    """Most scale-downs in any hour (default 3, which keeps replica changes near six an hour); scale-ups
    are never held back."""


class AutoscalingSpec(ApiObject):
    """Replica bounds and the policy that moves between them."""

    min_replicas: int = Field(default=1, ge=0, le=1000)
    """Fewest replicas; 0 allows scale to zero."""
    max_replicas: int = Field(default=1, ge=1, le=1000)
    """Most replicas."""
    scale_to_zero_after: str = Field(default="10m", max_length=32, pattern=DURATION_PATTERN)
    """Idle time after which a model with minReplicas 0 goes to zero replicas."""
    policy: Literal["tessera", "external", "static"] = "tessera"
    """tessera: Tessera's LLM-aware policy; external: HPA/KEDA set spec.replicas through the scale subresource; static: spec.replicas (or minReplicas)."""
    targets: AutoscalingTargets | None = None
    """Targets of the tessera policy."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("self.minReplicas <= self.maxReplicas",
                    "minReplicas must be less than or equal to maxReplicas", field_path=".minReplicas"),
            ]
        ),
    )


class CanaryChecks(ApiObject):
    """Live checks of the candidate against the stable version during a canary step."""

    max_error_rate_increase: float = Field(default=0.01, ge=0, le=1)
    """Largest allowed increase of the error rate over stable (absolute fraction)."""
    max_ttft_ratio: float = Field(default=1.5, ge=1)
    """Largest allowed ratio of candidate to stable p95 time to first token."""
    ttft_slack_seconds: float = Field(default=0.1, ge=0, le=60)
    """An increase of p95 time to first token below this never fails the step, whatever the ratio: a
    p95 over a step's few requests is read from histogram buckets and swings at small values."""
    min_requests: int = Field(default=20, ge=0)
    """Requests the candidate must have served in the step for the checks to count."""


class CanaryStep(ApiObject):
    """One step of the canary: a traffic weight held for a duration while live checks run."""

    weight: int = Field(ge=1, le=100)
    """Percent of traffic sent to the candidate."""
    duration: str = Field(default="1m", max_length=32, pattern=DURATION_PATTERN)
    """How long to hold this weight before the next step."""
    checks: CanaryChecks | None = None
    """Live checks for this step (defaults apply when omitted)."""


class RolloutSpec(ApiObject):
    """How a new version replaces the stable one."""

    evaluation_suites: list[str] = Field(
        default_factory=list, max_length=16,
        json_schema_extra={"items": {"type": "string", "maxLength": 253}},
    )
    """EvaluationSuites (same namespace) the candidate must pass before it gets traffic."""
    canary_steps: list[CanaryStep] = Field(default_factory=list, max_length=20)
    """Traffic steps after evaluation passes; empty means promote right after evaluation."""
    auto_rollback: bool = True
    """Roll back automatically on a Fail verdict or a failed live check."""
    evaluation_retries: int = Field(default=3, ge=0, le=20)
    """How often an evaluation that ended in Error is retried (with backoff) before the rollout holds."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("self.canarySteps.all(s, s.weight <= 100)", "canary weights are percentages", field_path=".canarySteps"),
                cel("self.canarySteps.map(s, s.weight).isSorted() && "
                    "self.canarySteps.all(s, self.canarySteps.exists_one(t, t.weight == s.weight))",
                    "canary weights must increase from step to step", field_path=".canarySteps"),
            ]
        ),
    )


class ModelSpec(ApiObject):
    """What the model owner declares."""

    source: ModelSource
    """Where the weights come from."""
    served_model_name: str | None = Field(default=None, max_length=256)
    """Name clients use in the OpenAI `model` field; default: the Model's name."""
    aliases: list[str] = Field(
        default_factory=list, max_length=16, json_schema_extra={"items": {"type": "string", "maxLength": 256}}
    )
    """Other names the router accepts for this model."""
    engine: EngineSpec = Field(default_factory=EngineSpec)
    """Serving engine."""
    placement: Placement = Field(default_factory=Placement)
    """Accelerators and parallelism; chosen by the planner unless overridden."""
    slo: ServiceLevelObjective | None = None
    """Latency objectives."""
    autoscaling: AutoscalingSpec = Field(default_factory=AutoscalingSpec)
    """Replica bounds and policy."""
    replicas: int | None = Field(default=None, ge=0, le=1000)
    """Desired replicas when autoscaling.policy is external (written by HPA/KEDA through the scale subresource) or static."""
    rollout: RolloutSpec | None = None
    """Evaluation gates and canary steps for new versions; without it a new version replaces the old with a surge."""

    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("!has(self.replicas) || (self.replicas >= self.autoscaling.minReplicas && self.replicas <= self.autoscaling.maxReplicas)",
                    "replicas must lie within autoscaling.minReplicas and autoscaling.maxReplicas", field_path=".replicas"),
                cel("self.engine.name == 'transformers' || !self.placement.accelerators.exists(a, a == 'cpu')",
                    "placement on cpu needs engine.name transformers (vLLM runs on GPUs here)", field_path=".engine.name"),
                cel("self.source.format != 'gguf' || self.engine.name == 'transformers' || self.placement.quantization == 'gguf'",
                    "gguf weights on vLLM need placement.quantization gguf", field_path=".source.format"),
            ]
        ),
    )


class ResolvedPlan(ApiObject):
    """The planner's choice, as applied."""

    accelerator: str = Field(max_length=64)
    """GPU catalogue name, or cpu."""
    gpus_per_replica: int = Field(default=0, ge=0)
    """GPUs one replica uses (TP x PP)."""
    tensor_parallel: int = Field(default=1, ge=1)
    """Tensor-parallel size."""
    pipeline_parallel: int = Field(default=1, ge=1)
    """Pipeline-parallel size."""
    nodes_per_replica: int = Field(default=1, ge=1)
    """Nodes one replica spans (LeaderWorkerSet group size when > 1)."""
    max_model_len: int | None = Field(default=None, ge=1)
    """Longest request supported."""
    kv_cache_tokens: int | None = Field(default=None, ge=0)
    """KV-cache capacity per replica in tokens."""
    max_concurrent_sequences: float | None = Field(default=None, ge=0)
    """Sequences of maxModelLen that fit in the KV cache at once."""
    quantization: str | None = Field(default=None, max_length=32)
    """Weight quantization in use."""
    kv_cache_dtype: str | None = Field(default=None, max_length=32)
    """KV-cache dtype in use."""
    gpu_memory_utilization: float | None = Field(default=None, ge=0, le=1)
    """Memory fraction given to the engine."""
    cost_per_hour: float | None = Field(default=None, ge=0)
    """Estimated cost of one replica per hour (catalogue prices)."""
    estimated_load_seconds: float | None = Field(default=None, ge=0)
    """Estimated time to load the weights; the startup probe's budget derives from it."""
    summary: str = Field(default="", max_length=2048)
    """One line a person can read."""


class VersionRef(ApiObject):
    """A version of the model: the hash of what defines it."""

    version: str = Field(max_length=32)
    """Short stable hash of source, revision, engine and placement."""
    revision: str | None = Field(default=None, max_length=256)
    """spec.source.revision of that version."""
    since: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When this version took this role."""


class TrafficWeight(ApiObject):
    """Share of traffic the router sends to one version."""

    version: str = Field(max_length=32)
    """Version hash."""
    weight: int = Field(ge=0, le=100)
    """Percent of requests."""


class LiveCounters(ApiObject):
    """Running totals one serving pod reported on its /metrics (vLLM names), kept as a canary step's baseline."""

    requests: float = Field(default=0, ge=0)
    """Requests the engine finished (vllm:request_success_total, every finished_reason)."""
    errors: float = Field(default=0, ge=0)
    """Of those, the ones that finished in error (finished_reason="error")."""
    ttft_buckets: list[float] = Field(default_factory=list, max_length=64)
    """Cumulative counts of vllm:time_to_first_token_seconds, one per bound in the baseline's ttftBounds."""
    ttft_count: float = Field(default=0, ge=0)
    """Observations of that histogram (its +Inf bucket)."""


class LiveBaseline(ApiObject):
    """The serving pods' counters when a canary step began: live checks judge what happened since."""

    step: int = Field(default=0, ge=0)
    """The canary step this baseline belongs to."""
    step_started: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """stepStarted of that step (a new step, or the same step started again, takes a new baseline)."""
    ttft_bounds: list[float] = Field(default_factory=list, max_length=64)
    """Upper bounds (seconds) of the time-to-first-token buckets, +Inf left out."""
    pods: dict[str, LiveCounters] = Field(default_factory=dict, max_length=128)
    """Pod name -> its counters at the start of the step (candidate and stable pods)."""


class RolloutStatus(ApiObject):
    """Where a rollout stands."""

    phase: Literal["Idle", "Evaluating", "Canary", "Promoting", "RollingBack", "Held", "Completed"] = "Idle"
    """Idle, Evaluating, Canary, Promoting, RollingBack, Held or Completed."""
    step: int = Field(default=0, ge=0)
    """Index of the current canary step."""
    step_started: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When the current step began."""
    evaluation: str | None = Field(default=None, max_length=253)
    """Name of the ModelEvaluation of the candidate."""
    attempts: int = Field(default=0, ge=0)
    """Evaluations tried for this candidate (Error retries included)."""
    message: str = Field(default="", max_length=4096)
    """What is happening and why."""
    requested_by: str | None = Field(default=None, max_length=256)
    """Who asked for the last manual action (promote, abort, retry)."""
    live_baseline: LiveBaseline | None = None
    """The serving pods' counters at the start of the current canary step (live checks use the difference)."""


class RejectedCandidate(ApiObject):
    """A candidate version that was rolled back, with the evidence."""

    version: str = Field(max_length=32)
    """Version hash of the candidate."""
    revision: str | None = Field(default=None, max_length=256)
    """spec.source.revision of the candidate."""
    evaluation: str | None = Field(default=None, max_length=253)
    """ModelEvaluation that judged it."""
    reason: str = Field(max_length=4096)
    """Why it was rejected."""
    time: str = Field(json_schema_extra={"format": "date-time"})
    """When it was rejected."""


class AutoscalingStatus(ApiObject):
    """The autoscaler's last decision."""

    desired_replicas: int = Field(default=0, ge=0)
    """Replicas the policy asked for."""
    reason: str = Field(default="", max_length=1024)
    """One sentence explaining the decision."""
    last_scale_time: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    """When replicas last changed."""
    state: dict[str, str] = Field(default_factory=dict, max_length=32)
    """Policy state carried between reconciles (opaque to users)."""


class ModelStatus(ApiObject):
    """What Tessera observed and decided. Written only by the operator, once per reconcile."""

    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation this status describes."""
    conditions: list[Condition] = Field(default_factory=list, max_length=16, json_schema_extra=CONDITIONS_EXTRA)
    """Ready, Progressing and Degraded (kstatus-compatible)."""
    plan: ResolvedPlan | None = None
    """The resolved plan of the stable version."""
    replicas: int = Field(default=0, ge=0)
    """Replicas of the current versions (scale subresource)."""
    ready_replicas: int = Field(default=0, ge=0)
    """Replicas ready to serve."""
    selector: str | None = Field(default=None, max_length=1024)
    """Label selector of the model's serving pods (scale subresource)."""
    stable: VersionRef | None = None
    """The version serving most traffic."""
    candidate: VersionRef | None = None
    """The version being rolled out, if any."""
    traffic: list[TrafficWeight] = Field(default_factory=list, max_length=4)
    """Traffic weights the router applies."""
    rollout: RolloutStatus | None = None
    """Rollout progress."""
    rejected_candidates: list[RejectedCandidate] = Field(default_factory=list, max_length=20)
    """Candidates rolled back, newest last (the last 20)."""
    autoscaling: AutoscalingStatus | None = None
    """The autoscaler's last decision."""
    endpoint: str | None = Field(default=None, max_length=1024)
    """In-cluster URL of the model's Service (OpenAI API)."""


class Model(ApiObject):
    """A large language model that Tessera plans, serves, autoscales and rolls out."""

    api_version: Literal["tessera.dev/v1alpha1"] = API_VERSION
    kind: Literal["Model"] = "Model"
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ModelSpec
    status: ModelStatus | None = None
