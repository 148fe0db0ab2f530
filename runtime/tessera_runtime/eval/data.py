"""Items of an evaluation task: where they come from, which are used, and the digest that names them.

Sources: inline in the suite, a ConfigMap key (read by the caller, who holds the API client), a file,
or a built-in set shipped in this package (`builtin/<name>.jsonl`). Files and ConfigMaps hold JSON lines
or a YAML list of items. The digest is the sha256 of the exact items used, after sampling, so a
ModelEvaluation says precisely what was measured.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tessera_operator.api.v1alpha1 import EvaluationItem, EvaluationSuite, EvaluationTask

ConfigMapReader = Callable[[str, str], str]
"""(ConfigMap name, key) -> the key's text; supplied by whoever can reach the API."""


class DataError(Exception):
    """The items of a task cannot be loaded or do not fit the task kind."""


def builtin_names() -> list[str]:
    """Names of the built-in item sets."""
    folder = resources.files(__package__).joinpath("builtin")
    return sorted(
        entry.name.removesuffix(".jsonl") for entry in folder.iterdir() if entry.name.endswith(".jsonl")
    )


def builtin_text(name: str) -> str:
    """The JSON lines of a built-in set."""
    if name not in builtin_names():
        raise DataError(f"no built-in data set {name!r}; built-in sets: {', '.join(builtin_names())}")
    return resources.files(__package__).joinpath("builtin", f"{name}.jsonl").read_text(encoding="utf-8")


def parse_items(text: str, origin: str) -> list[EvaluationItem]:
    """Items from JSON lines or a YAML (or JSON) list."""
    stripped = text.lstrip()
    raw: list[Any]
    try:
        if stripped.startswith("[") or stripped.startswith("-"):
            loaded = yaml.safe_load(text)
            if not isinstance(loaded, list):
                raise DataError(f"{origin}: expected a list of items")
            raw = loaded
        else:
            raw = [
                json.loads(line)
                for line in text.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
            ]
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        raise DataError(f"{origin}: cannot parse items: {error}") from error
    items: list[EvaluationItem] = []
    for index, entry in enumerate(raw):
        try:
            items.append(EvaluationItem.model_validate(entry))
        except ValidationError as error:
            raise DataError(f"{origin}: item {index} is invalid: {error.errors()[0]['msg']}") from error
    return items


def load_items(task: EvaluationTask, read_config_map: ConfigMapReader | None = None) -> list[EvaluationItem]:
    """All items of a task from its data source (before sampling)."""
    data = task.data
    if data is None:
        return []
    if data.inline is not None:
        return list(data.inline)
    if data.builtin is not None:
        return parse_items(builtin_text(data.builtin), f"built-in set {data.builtin}")
    if data.file is not None:
        try:
            text = Path(data.file).read_text(encoding="utf-8")
        except OSError as error:
            raise DataError(f"cannot read {data.file}: {error.strerror or error}") from error
        return parse_items(text, data.file)
    if data.config_map_ref is not None:
        ref = data.config_map_ref
        if read_config_map is None:
            raise DataError(f"task {task.name} reads ConfigMap {ref.name}, but no cluster access was given")
        return parse_items(read_config_map(ref.name, ref.key), f"ConfigMap {ref.name} key {ref.key}")
    raise DataError(f"task {task.name} has no data source")


def sample_items(items: Sequence[EvaluationItem], sample_size: int | None, seed: int) -> list[EvaluationItem]:
    """A seeded sample of the items, in their original order (all of them without a sample size)."""
    if sample_size is None or sample_size >= len(items):
        return list(items)
    chosen = sorted(random.Random(seed).sample(range(len(items)), sample_size))
    return [items[i] for i in chosen]


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def items_digest(items: Sequence[EvaluationItem]) -> str:
    """sha256 of the items exactly as used (canonical JSON), written `sha256:<hex>`."""
    return "sha256:" + hashlib.sha256(_canonical([item.to_api() for item in items])).hexdigest()


def suite_digest(suite: EvaluationSuite, task_digests: Sequence[str]) -> str:
    """sha256 of the suite spec together with the digests of every task's items."""
    payload = {"spec": suite.spec.to_api(), "items": list(task_digests)}
    return "sha256:" + hashlib.sha256(_canonical(payload)).hexdigest()


@dataclass(frozen=True)
class TaskItems:
    """The items a task will use and their digest."""

    items: list[EvaluationItem]
    digest: str


def prepare_items(task: EvaluationTask, read_config_map: ConfigMapReader | None = None) -> TaskItems:
    """Load, check and sample a task's items."""
    items = sample_items(load_items(task, read_config_map), task.sample_size, task.seed)
    check_items(task, items)
    return TaskItems(items, items_digest(items))


def check_items(task: EvaluationTask, items: Sequence[EvaluationItem]) -> None:
    """Refuse items that lack what the task kind needs, naming the first bad item."""
    if task.kind == "latency":
        return
    if not items:
        raise DataError(f"task {task.name} has no items")
    for index, item in enumerate(items):
        problem = _item_problem(task, item)
        if problem:
            raise DataError(f"task {task.name}, item {index}: {problem}")


def _item_problem(task: EvaluationTask, item: EvaluationItem) -> str | None:
    if task.kind == "multipleChoice":
        if not item.prompt or len(item.choices) < 2 or item.answer is None:
            return "multipleChoice needs prompt, at least two choices and answer"
        if choice_index(item) is None:
            return f"answer {item.answer!r} is neither one of the choices nor an index"
    elif task.kind == "exactMatch":
        if not item.prompt or (item.answer is None and item.pattern is None):
            return "exactMatch needs prompt and answer or pattern"
    elif task.kind == "perplexity":
        if not item.text:
            return "perplexity needs text"
    elif task.kind == "counterfactualBias" and (not item.template or "{value}" not in item.template):
        return "counterfactualBias needs a template with a {value} placeholder"
    return None


def choice_index(item: EvaluationItem) -> int | None:
    """Index of the correct choice: the answer is a choice's text, its index, or its letter (A, B, ...)."""
    answer = item.answer
    if answer is None:
        return None
    if answer in item.choices:
        return item.choices.index(answer)
    if answer.isdigit() and int(answer) < len(item.choices):
        return int(answer)
    if len(answer) == 1 and "A" <= answer <= "Z" and ord(answer) - ord("A") < len(item.choices):
        return ord(answer) - ord("A")
    return None
