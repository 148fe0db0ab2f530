"""Which Kubernetes API permissions the operator's and the router's code needs, read from the code.

The chart's RBAC must match these exactly (tests/unit/test_chart_rbac.py). The scan reads the
source with `ast`, never runs it:

* operator: kopf handler decorators (`kopf.on.create(GROUP, VERSION, "models")`, `kopf.on.event`,
  `kopf.timer`, ...), and the calls of its JSON client `Kube` (`kube.get/list/create/delete/
  merge_patch/apply`) with the `Resource` constants of `tessera_operator.k8s.resources`. `apply` and
  `delete` of built or observed objects (no `Resource` argument) act on `OWNED_KINDS`.
* router: the typed methods of the official client (`list_namespaced_secret`,
  `patch_namespaced_custom_object`, ...). List functions in a module that watches (`watch=True`)
  are used to watch too.

A call the scan cannot attribute to a resource is reported as unresolved, so a new kind of API
use fails the test until the scan (and the chart) learn it.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path


def parse_file(path: Path) -> ast.Module:
    """`ast.parse` of a file, in a fresh thread. CPython 3.11 before 3.11.8 can fail the parse with
    "AST constructor recursion depth mismatch" when an earlier test (hypothesis does) changed the
    recursion limit; a new thread starts with consistent recursion counters."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(ast.parse, path.read_text()).result()

ROOT = Path(__file__).resolve().parents[2]
OPERATOR = ROOT / "operator" / "tessera_operator"
# Parts of the operator package that do not run in the operator's pod (CLI, local cluster,
# simulator, generators) or are pure (no I/O).
NOT_IN_OPERATOR_POD = ("devcluster", "simulator", "commands", "cli.py", "docgen.py", "crdgen.py", "validation.py")


@dataclass(frozen=True, order=True)
class Permission:
    """One RBAC grant: API group, resource (with /subresource) and verb."""

    group: str
    resource: str
    verb: str

    def __str__(self) -> str:
        return f"{self.group or 'core'}/{self.resource}:{self.verb}"


@dataclass
class ScanResult:
    """Permissions found, with where each was seen, and calls that could not be attributed."""

    needed: dict[Permission, list[str]] = field(default_factory=dict)
    unresolved: list[str] = field(default_factory=list)

    def add(self, group: str, resource: str, verbs: Iterable[str], where: str) -> None:
        for verb in verbs:
            self.needed.setdefault(Permission(group, resource, verb), []).append(where)


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0] if "/" in api_version else ""


def _python_files(root: Path, skip: tuple[str, ...] = ()) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip or "__pycache__" in relative.parts:
            continue
        yield path


def _where(path: Path, node: ast.AST) -> str:
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return f"{shown}:{getattr(node, 'lineno', 0)}"


# ---------------------------------------------------------------------------------------------- operator

@dataclass(frozen=True)
class ResourceConstant:
    group: str
    plural: str


def resource_constants(path: Path = OPERATOR / "k8s" / "resources.py") -> tuple[
        dict[str, ResourceConstant], dict[str, tuple[str, ...]]]:
    """`NAME = Resource("apps/v1", "Deployment", "deployments")` and `NAMES = (A, B)` of resources.py."""
    resources: dict[str, ResourceConstant] = {}
    groups: dict[str, tuple[str, ...]] = {}
    for node in parse_file(path).body:
        target, value = None, None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            target, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            target, value = node.target.id, node.value
        if target is None or value is None:
            continue
        if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and value.func.id == "Resource":
            api_version, _, plural = (ast.literal_eval(arg) for arg in value.args[:3])
            resources[target] = ResourceConstant(_group(api_version), plural)
        elif isinstance(value, ast.Tuple) and all(isinstance(e, ast.Name) for e in value.elts):
            groups[target] = tuple(e.id for e in value.elts if isinstance(e, ast.Name))
    return resources, groups


def _module_constants(paths: Iterable[Path]) -> dict[str, ast.expr]:
    """Module-level `NAME = <expression>` assignments by name, across modules."""
    constants: dict[str, ast.expr] = {}
    for path in paths:
        for node in parse_file(path).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                constants[node.targets[0].id] = node.value
            elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple) \
                    and isinstance(node.value, ast.Tuple) and len(node.targets[0].elts) == len(node.value.elts):
                for target, value in zip(node.targets[0].elts, node.value.elts, strict=True):  # A, B = "a", "b"
                    if isinstance(target, ast.Name):
                        constants[target.id] = value
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
                constants[node.target.id] = node.value
    return constants


def resolve(expr: ast.expr, constants: dict[str, ast.expr], depth: int = 0) -> object:
    """The value of a literal, a constant's name, or a tuple of those (None when not static)."""
    if depth > 8:
        return None
    if isinstance(expr, ast.Constant):
        return expr.value
    if isinstance(expr, ast.Name) and expr.id in constants:
        return resolve(constants[expr.id], constants, depth + 1)
    if isinstance(expr, ast.Tuple | ast.List):
        return tuple(resolve(e, constants, depth + 1) for e in expr.elts)
    return None


KUBE_VERBS = {"get": ("get",), "list": ("list",), "create": ("create",), "delete": ("delete",),
              "merge_patch": ("patch",), "apply": ("patch", "create")}
# kopf patches a handled object for its finalizer and its progress annotations; events only watch.
KOPF_HANDLER_VERBS = ("list", "watch", "patch")
KOPF_WATCH_VERBS = ("list", "watch")


class _OperatorVisitor(ast.NodeVisitor):
    def __init__(self, path: Path, result: ScanResult, resources: dict[str, ResourceConstant],
                 groups: dict[str, tuple[str, ...]], constants: dict[str, ast.expr]) -> None:
        self.path, self.result = path, result
        self.resources, self.groups, self.constants = resources, groups, constants
        self.loop_vars: list[dict[str, str]] = [{}]

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self.loop_vars.append({})
        self.generic_visit(node)
        self.loop_vars.pop()

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_For(self, node: ast.For) -> None:
        if isinstance(node.target, ast.Name) and isinstance(node.iter, ast.Name):
            self.loop_vars[-1][node.target.id] = node.iter.id
        self.generic_visit(node)

    def _resources_of(self, arg: ast.expr | None) -> list[ResourceConstant] | None:
        if isinstance(arg, ast.Call) and ast.unparse(arg.func) == "resource_of":
            # resource_of(live): an object the operator observed among its own, i.e. OWNED_KINDS
            return [self.resources[n] for n in self.groups["OWNED_KINDS"]]
        if not isinstance(arg, ast.Name):
            return None
        name = self.loop_vars[-1].get(arg.id, arg.id)
        if name in self.resources:
            return [self.resources[name]]
        if name in self.groups:
            return [self.resources[n] for n in self.groups[name]]
        return None

    def visit_Call(self, node: ast.Call) -> None:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in KUBE_VERBS and ast.unparse(func.value).endswith("kube"):
            self._kube_call(node, func.attr)
        dotted = ast.unparse(func)
        if isinstance(func, ast.Attribute) and dotted.startswith(("kopf.on.", "kopf.timer", "kopf.daemon", "kopf.index")):
            self._kopf_handler(node, dotted)

    def _kube_call(self, node: ast.Call, method: str) -> None:
        where = _where(self.path, node)
        if method == "apply":  # apply(obj): objects the desired-state builders make, i.e. OWNED_KINDS
            targets = [self.resources[n] for n in self.groups["OWNED_KINDS"]]
        else:
            first = node.args[0] if node.args else None
            found = self._resources_of(first)
            if found is None:
                self.result.unresolved.append(f"{where}: kube.{method}({ast.unparse(first) if first else ''})")
                return
            targets = found
        subresource = next((k.value for k in node.keywords if k.arg == "subresource"), None)
        suffix = ""
        if isinstance(subresource, ast.Constant) and isinstance(subresource.value, str) and subresource.value:
            suffix = "/" + subresource.value
        for target in targets:
            self.result.add(target.group, target.plural + suffix, KUBE_VERBS[method], where)

    def _kopf_handler(self, node: ast.Call, dotted: str) -> None:
        where = _where(self.path, node)
        if dotted in ("kopf.on.startup", "kopf.on.cleanup", "kopf.on.login", "kopf.on.probe",
                      "kopf.on.mutate", "kopf.on.validate"):
            return
        values: list[object] = []
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                unpacked = resolve(arg.value, self.constants)
                values.extend(unpacked if isinstance(unpacked, tuple) else [None])
            else:
                values.append(resolve(arg, self.constants))
        if len(values) != 3 or not all(isinstance(v, str) for v in values):
            self.result.unresolved.append(f"{where}: {dotted} with arguments {values}")
            return
        group, _version, plural = (str(v) for v in values)
        verbs = KOPF_WATCH_VERBS if dotted.startswith(("kopf.on.event", "kopf.index")) else KOPF_HANDLER_VERBS
        self.result.add(group, plural, verbs, where)


def scan_operator() -> ScanResult:
    """Permissions the operator's code needs (kopf's own peering and CRD scanning excluded)."""
    result = ScanResult()
    resources, groups = resource_constants()
    files = list(_python_files(OPERATOR, NOT_IN_OPERATOR_POD))
    constants = _module_constants([*files, OPERATOR / "api" / "v1alpha1" / "base.py"])
    for path in files:
        _OperatorVisitor(path, result, resources, groups, constants).visit(parse_file(path))
    return result


# ------------------------------------------------------------------------------ router and evaluator

ROUTER = ROOT / "runtime" / "tessera_runtime" / "router"
EVALUATOR = ROOT / "runtime" / "tessera_runtime" / "eval"
_TYPED_METHOD = re.compile(
    r"^(list|read|get|create|patch|replace|delete|delete_collection)_(namespaced_|cluster_)?([a-z_]+?)"
    r"(_for_all_namespaces)?(_status|_scale)?$"
)
# snake_case singular of the typed client -> (group, plural)
TYPED_RESOURCES = {
    "secret": ("", "secrets"), "config_map": ("", "configmaps"), "pod": ("", "pods"), "service": ("", "services"),
    "endpoints": ("", "endpoints"), "node": ("", "nodes"), "namespace": ("", "namespaces"), "event": ("", "events"),
    "endpoint_slice": ("discovery.k8s.io", "endpointslices"), "deployment": ("apps", "deployments"),
    "lease": ("coordination.k8s.io", "leases"), "job": ("batch", "jobs"),
}
_VERBS = {"list": "list", "read": "get", "get": "get", "create": "create", "patch": "patch", "replace": "update",
          "delete": "delete", "delete_collection": "deletecollection"}


def _custom_object_target(node: ast.Attribute, parents: dict[ast.AST, ast.AST],
                          constants: dict[str, ast.expr]) -> tuple[str, str] | None:
    """(group, plural) of a CustomObjectsApi method: from its call's arguments, or, for a method
    handed over uncalled (a list function for a watcher), from the dict of arguments beside it."""
    call = parents.get(node)
    index = 3 if "namespaced" in node.attr else 2
    args: dict[str, ast.expr] = {}
    if isinstance(call, ast.Call) and (call.func is node or node in call.args):
        # method(group, version, [namespace,] plural, ...), or run(method, group, version, ...)
        positional = call.args if call.func is node else call.args[call.args.index(node) + 1:]
        args = {k.arg: k.value for k in call.keywords if k.arg}
        if len(positional) > index:
            args.setdefault("group", positional[0])
            args.setdefault("plural", positional[index])
    else:
        holder = parents.get(node)
        siblings = holder.elts if isinstance(holder, ast.Tuple) else []
        found = next((e for e in siblings if isinstance(e, ast.Dict)), None)
        if found is None:
            return None
        args = {str(resolve(k, constants)): v for k, v in zip(found.keys, found.values, strict=True) if k is not None}
    group, plural = (resolve(args[k], constants) if k in args else None for k in ("group", "plural"))
    if not isinstance(group, str) or not isinstance(plural, str):
        return None
    return group, plural


def scan_typed_client(root: Path) -> ScanResult:
    """Permissions a package using the official client's typed APIs needs."""
    result = ScanResult()
    files = list(_python_files(root))
    constants = _module_constants(files)
    for path in files:
        tree = parse_file(path)
        parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        watches = any(isinstance(n, ast.keyword) and n.arg == "watch" and isinstance(n.value, ast.Constant)
                      and n.value.value is True for n in ast.walk(tree))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            match = _TYPED_METHOD.match(node.attr)
            if match is None or match.group(3) not in {*TYPED_RESOURCES, "custom_object"}:
                continue
            action, kind, sub = match.group(1), match.group(3), match.group(5)
            where = _where(path, node)
            if kind == "custom_object":
                target = _custom_object_target(node, parents, constants)
                if target is None:
                    result.unresolved.append(f"{where}: {node.attr} (group or plural not static)")
                    continue
                group, plural = target
            else:
                group, plural = TYPED_RESOURCES[kind]
            verbs = [_VERBS[action]] + (["watch"] if action == "list" and watches else [])
            result.add(group, plural + (sub.replace("_", "/") if sub else ""), verbs, where)
    return result


def scan_router(root: Path = ROUTER) -> ScanResult:
    """Permissions the router's code needs."""
    return scan_typed_client(root)


def scan_evaluator(root: Path = EVALUATOR) -> ScanResult:
    """Permissions an evaluation Job (`tessera-runtime evaluate`) needs."""
    return scan_typed_client(root)
