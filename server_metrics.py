"""Request counters for `/metrics`, in the Prometheus text format. Per process: scrape every instance."""

import time
from collections import Counter
from dataclasses import dataclass, field

from starlette.types import ASGIApp, Message, Receive, Scope, Send

KNOWN_PATHS = frozenset({"/graphql", "/webhooks/stripe", "/healthz", "/readyz", "/metrics"})


@dataclass
class Metrics:
    requests: Counter[tuple[str, str, int]] = field(default_factory=Counter)
    seconds: dict[tuple[str, str], float] = field(default_factory=dict)

    def render(self) -> str:
        lines = [
            "# HELP http_requests_total HTTP requests by method, path and status.",
            "# TYPE http_requests_total counter",
            *(
                f'http_requests_total{{method="{m}",path="{p}",status="{s}"}} {n}'
                for (m, p, s), n in sorted(self.requests.items())
            ),
            "# HELP http_request_seconds_total Time spent serving requests, by method and path.",
            "# TYPE http_request_seconds_total counter",
            *(
                f'http_request_seconds_total{{method="{m}",path="{p}"}} {t:.6f}'
                for (m, p), t in sorted(self.seconds.items())
            ),
        ]
        return "\n".join(lines) + "\n"


class MetricsMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Unknown paths share one label, so scanners cannot grow the label set without bound.
        path = scope["path"] if scope["path"] in KNOWN_PATHS else "other"
        method = scope["method"]
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            self.metrics.requests[(method, path, status)] += 1
            elapsed = time.perf_counter() - started
            self.metrics.seconds[(method, path)] = self.metrics.seconds.get((method, path), 0.0) + elapsed
