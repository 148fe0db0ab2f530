"""The evaluation's only contact with the Kubernetes API: read the suite, the Model and ConfigMaps;
write the one ModelEvaluation.

The ModelEvaluation is created first (spec only: the apiserver ignores status on create when the
status subresource is on), then its status is set through the status subresource. The CRD refuses
any later change of status.result, so a retried Job that finds a result already written leaves it be.
"""

from __future__ import annotations

from typing import Any

from tessera_operator.api.v1alpha1 import EvaluationSuite, ModelEvaluation

from .data import ConfigMapReader, DataError

GROUP, VERSION = "tessera.dev", "v1alpha1"


def api_client() -> Any:
    """A Kubernetes API client: in-cluster credentials in a pod, else the local kubeconfig."""
    from kubernetes import client
    from kubernetes import config as kube_config

    from tessera_runtime.kube_incluster import load_incluster_config

    config: Any = kube_config  # untyped loaders
    try:
        load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _objects(api: Any) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api)


def read_suite(api: Any, namespace: str, name: str) -> EvaluationSuite:
    """The named EvaluationSuite."""

    raw = _objects(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "evaluationsuites", name)
    raw.pop("status", None)
    return EvaluationSuite.model_validate(raw)


def read_model(api: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The Model as stored (None when it does not exist: standalone names need no Model)."""
    from kubernetes.client.exceptions import ApiException

    try:
        model: dict[str, Any] = _objects(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, "models", name
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    return model


def config_map_reader(api: Any, namespace: str) -> ConfigMapReader:
    """Reads ConfigMap keys of the namespace through the API."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)

    def read(name: str, key: str) -> str:
        try:
            config_map = core.read_namespaced_config_map(name, namespace)
        except ApiException as error:
            raise DataError(f"cannot read ConfigMap {namespace}/{name}: {error.reason}") from error
        data = config_map.data or {}
        if key not in data:
            raise DataError(f"ConfigMap {namespace}/{name} has no key {key!r}")
        return str(data[key])

    return read


def write_evaluation(api: Any, evaluation: ModelEvaluation, namespace: str) -> ModelEvaluation:
    """Create the ModelEvaluation and set its status once; return what the apiserver holds."""
    from kubernetes.client.exceptions import ApiException

    objects: Any = _objects(api)
    body = evaluation.to_api()
    status = body.pop("status", None)
    name = body["metadata"]["name"]
    try:
        stored = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, "modelevaluations", body)
    except ApiException as error:
        if error.status != 409:
            raise
        stored = objects.get_namespaced_custom_object(GROUP, VERSION, namespace, "modelevaluations", name)
        if (stored.get("status") or {}).get("result"):
            return ModelEvaluation.model_validate(stored)  # written by an earlier attempt: immutable
    stored["status"] = status
    written = objects.replace_namespaced_custom_object_status(
        GROUP, VERSION, namespace, "modelevaluations", name, stored
    )
    return ModelEvaluation.model_validate(written)


def read_evaluation(api: Any, namespace: str, name: str) -> ModelEvaluation:
    """A stored ModelEvaluation."""

    raw = _objects(api).get_namespaced_custom_object(GROUP, VERSION, namespace, "modelevaluations", name)
    return ModelEvaluation.model_validate(raw)
