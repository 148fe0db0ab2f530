"""Shared building blocks of the v1alpha1 API: the pydantic base class and common types.

Every type uses camelCase on the wire (Kubernetes convention) and snake_case in Python, takes its
field descriptions from attribute docstrings (so the CRD documents itself), and forbids unknown
fields (the CRD's structural schema prunes them anyway; forbidding them makes offline validation
name typos instead of dropping them silently).
"""

from __future__ import annotations

from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

GROUP = "tessera.dev"
VERSION = "v1alpha1"
API_VERSION: Final = "tessera.dev/v1alpha1"  # f"{GROUP}/{VERSION}", spelt out for the type checker

# Kubernetes-style duration: "90s", "10m", "1h30m", "500ms".
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
# DNS-1123 subdomain / label names used for object references.
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# Label (and taint) keys: an optional DNS-subdomain prefix and a name; label values. Empty allowed.
QUALIFIED_NAME_PATTERN = (r"^(([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                          r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
LABEL_VALUE_PATTERN = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"


def cel(rule: str, message: str, *, field_path: str | None = None, reason: str | None = None) -> dict[str, str]:
    """One `x-kubernetes-validations` entry (a CEL rule evaluated by the apiserver and by `tessera validate`)."""
    entry = {"rule": rule, "message": message}
    if field_path:
        entry["fieldPath"] = field_path
    if reason:
        entry["reason"] = reason
    return entry


def k8s_extra(**markers: Any) -> dict[str, Any]:
    """Extra JSON-schema keys for a field or model, e.g. x-kubernetes-validations or list markers."""
    return {key.replace("_", "-"): value for key, value in markers.items()}


class ApiObject(BaseModel):
    """Base class of every API type."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        use_attribute_docstrings=True,
        extra="forbid",
        frozen=False,
    )

    def to_api(self) -> dict[str, Any]:
        """The object as the apiserver stores it: camelCase keys, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class SecretKeyRef(ApiObject):
    """A reference to one key of a Secret in the same namespace. The value is never copied anywhere."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Name of the Secret."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the Secret."""


class ConfigMapKeyRef(ApiObject):
    """A reference to one key of a ConfigMap in the same namespace."""

    name: str = Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)
    """Name of the ConfigMap."""
    key: str = Field(min_length=1, max_length=253)
    """Key inside the ConfigMap."""


class Toleration(ApiObject):
    """A Kubernetes toleration, copied onto the model's pods."""

    key: str | None = Field(default=None, max_length=316, pattern=QUALIFIED_NAME_PATTERN)
    """Taint key the toleration applies to; empty matches all keys (with operator Exists)."""
    operator: Literal["Exists", "Equal"] | None = None
    """Exists or Equal (default Equal)."""
    value: str | None = Field(default=None, max_length=63, pattern=LABEL_VALUE_PATTERN)
    """Taint value to match with operator Equal."""
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches all effects."""
    toleration_seconds: int | None = Field(default=None, ge=0)
    """For NoExecute: how long the pod stays bound after the taint appears."""

    # The pod validation rules of a toleration, so a bad one is refused here, naming the field,
    # instead of making the operator's Deployment fail.
    model_config = ConfigDict(
        json_schema_extra=k8s_extra(
            x_kubernetes_validations=[
                cel("(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
                    "operator must be Exists when key is empty (a toleration of every taint)", field_path=".operator"),
                cel("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
                    "value must be empty when operator is Exists", field_path=".value"),
                cel("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
                    "tolerationSeconds applies to the NoExecute effect only", field_path=".tolerationSeconds"),
            ]
        ),
    )


ConditionStatus = Literal["True", "False", "Unknown"]


class Condition(ApiObject):
    """A kstatus-compatible condition (the shape of metav1.Condition)."""

    type: str = Field(min_length=1, max_length=316)
    """Type of condition: Ready, Progressing, Degraded, ..."""
    status: ConditionStatus
    """True, False or Unknown."""
    observed_generation: int | None = Field(default=None, ge=0)
    """The .metadata.generation the condition was computed from."""
    last_transition_time: str = Field(json_schema_extra={"format": "date-time"})
    """When the condition last changed status (RFC 3339)."""
    reason: str = Field(min_length=1, max_length=1024)
    """A CamelCase word saying why, e.g. PlanInfeasible, Unschedulable, Available."""
    message: str = Field(default="", max_length=32768)
    """What a person needs to know, including what to do."""


CONDITIONS_EXTRA = k8s_extra(
    x_kubernetes_list_type="map", x_kubernetes_list_map_keys=["type"]
)
