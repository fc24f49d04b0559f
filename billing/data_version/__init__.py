"""Per-account data versions that every write bumps (the response cache's key)."""
