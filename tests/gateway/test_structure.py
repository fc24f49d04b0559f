"""The house's rules, checked over the source: only repositories query, and only background paths act as the system."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APPLICATION = [
    "billing",
    "root",
    "resolvers",
    "schema",
    "cli.py",
    *sorted(p.name for p in ROOT.glob("server*.py")),
]
SCOPE = ROOT / "billing" / "scope.py"
PREPARED = ROOT / "billing" / "prepared.py"  # runs the statements repositories build, builds none


def is_repository(path: Path) -> bool:
    """Each domain package's repository.py (or <name>_repository.py), the Scope they are built with, and what
    runs their prebuilt reads."""
    return path in {SCOPE, PREPARED} or path.name == "repository.py" or path.name.endswith("_repository.py")


QUERY_BUILDERS = {"select", "update", "insert", "delete", "upsert_insert", "text"}
SESSION_QUERIES = {"get", "exec", "execute", "scalar", "scalars", "stream", "merge", "delete", "refresh"}

# The only modules that may act for every account: the worker, Stripe's webhooks, the CLI, the demo seed.
SYSTEM_SCOPE_USERS: set[str] = {
    "billing/demo.py",
    "billing/observability/worker_lag.py",  # the lag gauge reads the queue of every account
    "billing/production.py",  # the demo's keys, checked before production starts
    "billing/auto_recharge/reconciliation.py",
    "billing/auto_recharge/engine.py",
    "billing/stripe_webhooks/service.py",
    "billing/events/service.py",  # a commit writes the events of whatever accounts its transaction changed
    "billing/outgoing_webhooks/service.py",  # a commit queues its events' webhooks
    "billing/outgoing_webhooks/delivery.py",  # the webhook worker sends for every account
    "cli.py",
}


def application_modules() -> list[Path]:
    paths: list[Path] = []
    for name in APPLICATION:
        path = ROOT / name
        paths.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    return paths


def queries_in(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in QUERY_BUILDERS:
            found.append(f"{func.id}() line {node.lineno}")
        elif (
            isinstance(func, ast.Attribute)
            and func.attr in SESSION_QUERIES
            and isinstance(func.value, ast.Name)
            and func.value.id in {"session", "connection", "conn"}
        ):
            found.append(f"{func.value.id}.{func.attr}() line {node.lineno}")
    return found


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_only_repositories_query() -> None:
    offenders = {
        relative(path): queries
        for path in application_modules()
        if not is_repository(path) and (queries := queries_in(path))
    }
    assert offenders == {}


def test_only_background_paths_act_as_the_system() -> None:
    users = {
        relative(path)
        for path in application_modules()
        if not is_repository(path) and "Scope.system(" in path.read_text()
    }
    assert users <= SYSTEM_SCOPE_USERS, users - SYSTEM_SCOPE_USERS


# server -> root -> resolvers -> schema types -> domain -> models: an import may only point down this list.
LAYERS = ["server", "root", "resolvers", "schema", "billing", "models"]


def layer_of(module: str) -> str | None:
    top = module.split(".")[0]
    if top.startswith("server") or top == "cli":
        return "server"
    return top if top in LAYERS else None


def runtime_imports(path: Path) -> list[tuple[str, int]]:
    """Modules imported when `path` runs; imports under `if TYPE_CHECKING:` are for the type checker only."""
    tree = ast.parse(path.read_text(), str(path))
    type_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for inner in ast.walk(node)
    }
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
    return found


def test_imports_point_one_way() -> None:
    upward = []
    for path in (
        application_modules()
        + sorted((ROOT / "root").rglob("*.py"))
        + sorted((ROOT / "models").rglob("*.py"))
    ):
        own = layer_of(relative(path).removesuffix(".py").replace("/", "."))
        assert own is not None, path
        for module, line in runtime_imports(path):
            target = layer_of(module)
            if target is not None and LAYERS.index(target) < LAYERS.index(own):
                upward.append(f"{relative(path)}:{line} imports {module}")
            if own in ("billing", "models") and module.split(".")[0] == "strawberry":
                upward.append(f"{relative(path)}:{line} imports strawberry into the domain")
    assert upward == []
