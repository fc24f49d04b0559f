"""SIGTERM to `make run` (`python -m cli dev`) shuts the gateway down and takes its Stripe stand-in with it."""

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO

import httpx
import pytest

from devtools.stripe_standin import free_port

ROOT = Path(__file__).resolve().parents[2]
STARTED = "Application startup complete."
# Bounds on a process that hangs, not timings under test.
START_SECONDS = 120
STOP_SECONDS = 60


def lines_of(stream: IO[str]) -> "queue.Queue[str]":
    """The stream's lines as they come, read by a thread so waiting for one can be bounded."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for(lines: "queue.Queue[str]", text: str, seen: list[str]) -> None:
    while True:
        try:
            line = lines.get(timeout=START_SECONDS)
        except queue.Empty:
            pytest.fail(f"no {text!r} within {START_SECONDS}s:\n{''.join(seen)}")
        seen.append(line)
        if text in line:
            return


def start_request(port: int, key: str) -> tuple[socket.socket, bytes]:
    """A GraphQL request whose headers are sent but whose body is held back: in flight until it is sent."""
    body = json.dumps({"query": "{ account { name } }"}).encode()
    connection = socket.create_connection(("127.0.0.1", port), timeout=STOP_SECONDS)
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    connection.sendall(head.encode() + body[:5])
    return connection, body[5:]


def response_of(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads a process's children from /proc")
def test_sigterm_stops_the_gateway_its_worker_and_the_stripe_stand_in(tmp_path: Path) -> None:
    port = free_port()
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("STRIPE_", "DATABASE_", "ENVIRONMENT", "REDIS_"))
    }
    environment |= {
        "BILLING_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}",
        "PORT": str(port),
        "EMBEDDED_WORKER": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "dev"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stand_ins: list[int] = []
    try:
        assert process.stderr is not None
        stderr, seen = lines_of(process.stderr), list[str]()
        wait_for(stderr, STARTED, seen)
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").text == "ok"
        stand_ins = children(process.pid)
        assert len(stand_ins) == 1, stand_ins  # localstripe, started because no STRIPE_SECRET_KEY is set

        key = (tmp_path / "demo-api-key").read_text().strip()  # written there, not to the developer's var/
        in_flight, rest = start_request(port, key)

        process.send_signal(signal.SIGTERM)
        wait_for(stderr, "Shutting down", seen)
        # uvicorn closes its listener right after logging that line: a new connection is refused.
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/healthz")
        in_flight.sendall(rest)  # ... but the request in flight is finished
        response = response_of(in_flight)
        assert response.startswith(b"HTTP/1.1 200"), response
        assert b"Nordlicht Solar GmbH" in response

        assert process.wait(timeout=STOP_SECONDS) == 128 + signal.SIGTERM
        wait_for(stderr, "Application shutdown complete.", seen)  # the lifespan ran: the worker stopped
        assert not alive(stand_ins[0])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        for orphan in filter(alive, stand_ins):  # after a failure above, not left behind by the test
            os.kill(orphan, signal.SIGKILL)
