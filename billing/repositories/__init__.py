"""Repositories: the only code that queries. Each is built for a `Scope`, so the caller's visibility is applied
by construction; the system scope (every account) is for workers, webhooks and the CLI only."""
