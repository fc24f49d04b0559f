"""The house's rules, checked over the source: only repositories query, and only background paths act as the system."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPLICATION = [
    "billing",
    "resolvers",
    "schema",
    "server.py",
    "server_graphql.py",
    "server_graphql_ws.py",
    "server_observability.py",
    "cli.py",
]
REPOSITORIES = ROOT / "billing" / "repositories"
QUERY_BUILDERS = {"select", "update", "insert", "delete", "upsert_insert", "text"}
SESSION_QUERIES = {"get", "exec", "execute", "scalar", "scalars", "stream", "merge", "delete", "refresh"}

# Modules whose queries are still being moved into repositories. Must only shrink; empty when the move is done.
PENDING: set[str] = {
    "billing/audit.py",
    "billing/events.py",
    "billing/webhooks_outgoing.py",
    "billing/webhooks_outgoing_delivery.py",
}

# The only modules that may act for every account: the worker, Stripe's webhooks, the CLI, the demo seed.
SYSTEM_SCOPE_USERS: set[str] = {
    "billing/demo.py",
    "billing/observability/worker_lag.py",  # the lag gauge reads the queue of every account
    "billing/production.py",  # the demo's keys, checked before production starts
    "billing/reconciliation.py",
    "billing/recharge_engine.py",
    "billing/usage.py",  # usage reporters write to every account and read none: no principal scope says so
    "billing/webhooks.py",
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
        if REPOSITORIES not in path.parents and (queries := queries_in(path))
    }
    assert set(offenders) - PENDING == set(), {name: offenders[name] for name in set(offenders) - PENDING}
    assert PENDING - set(offenders) == set(), "these no longer query: take them off PENDING"


def test_only_background_paths_act_as_the_system() -> None:
    users = {
        relative(path)
        for path in application_modules()
        if REPOSITORIES not in path.parents and "Scope.system(" in path.read_text()
    }
    assert users <= SYSTEM_SCOPE_USERS, users - SYSTEM_SCOPE_USERS
