"""Development tooling: never imported by the gateway in production."""
