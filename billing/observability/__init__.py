"""Observability through libraries: Prometheus metrics (`metrics`), structured logs with the request's id
(`logs`, `request`) and OpenTelemetry tracing switched on by the standard environment variables (`tracing`).

No web framework here: the HTTP middleware that feeds these is `server_observability.py`, beside `server.py`.
"""
