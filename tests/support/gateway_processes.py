"""Gateways and workers as real processes (`python -m cli serve`, `python -m cli worker`), for fault tests.

Each process gets the environment an operator would give it, writes its output to its own log file (quoted
when a test fails), and can be killed with SIGKILL like a crashed machine. `stop_all` always runs.
"""

import asyncio
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from devtools.stripe_standin import free_port
from tests.conftest import ROOT

READY_WITHIN_SECONDS = 30.0
STOP_WITHIN_SECONDS = 10.0


@dataclass
class Spawned:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    url: str | None = None  # gateways only

    def log_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""
        return f"--- {self.name} ({self.log}) ---\n" + "\n".join(text.splitlines()[-lines:])


@dataclass
class Processes:
    """Every process started through it; `stop_all` ends them (SIGTERM, then SIGKILL)."""

    environment: dict[str, str]
    log_dir: Path
    started: list[Spawned] = field(default_factory=list)

    async def _spawn(self, name: str, arguments: list[str], overrides: dict[str, str]) -> Spawned:
        log = self.log_dir / f"{name}-{len(self.started)}.log"
        with log.open("wb") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "cli",
                *arguments,
                cwd=ROOT,
                env=os.environ | self.environment | overrides,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=output,
                stderr=asyncio.subprocess.STDOUT,
            )
        spawned = Spawned(name, process, log)
        self.started.append(spawned)
        return spawned

    async def gateway(self, name: str, stripe_url: str) -> Spawned:
        """A gateway serving on a free port, returned once /readyz answers (the database is reachable)."""
        port = free_port()
        spawned = await self._spawn(
            name, ["serve"], {"HOST": "127.0.0.1", "PORT": str(port), "STRIPE_API_BASE": stripe_url}
        )
        spawned.url = f"http://127.0.0.1:{port}"
        await asyncio.wait_for(_ready(spawned), READY_WITHIN_SECONDS)
        return spawned

    async def worker(self, name: str, stripe_url: str) -> Spawned:
        return await self._spawn(name, ["worker"], {"STRIPE_API_BASE": stripe_url})

    async def kill(self, spawned: Spawned) -> None:
        """SIGKILL: no shutdown handler runs, connections drop mid-request."""
        spawned.process.send_signal(signal.SIGKILL)
        await asyncio.wait_for(spawned.process.wait(), STOP_WITHIN_SECONDS)

    async def stop_all(self) -> None:
        for spawned in self.started:
            if spawned.process.returncode is None:
                spawned.process.terminate()
        for spawned in self.started:
            try:
                await asyncio.wait_for(spawned.process.wait(), STOP_WITHIN_SECONDS)
            except TimeoutError:
                spawned.process.kill()
                await spawned.process.wait()

    def exited(self) -> list[Spawned]:
        """Processes that ended on their own (not killed by the test): a crash the test did not cause."""
        return [s for s in self.started if s.process.returncode not in (None, -signal.SIGKILL)]

    def logs(self) -> str:
        return "\n".join(spawned.log_tail() for spawned in self.started)


async def _ready(spawned: Spawned) -> None:
    async with httpx.AsyncClient(base_url=spawned.url or "", timeout=2) as client:
        while True:
            if spawned.process.returncode is not None:
                raise RuntimeError(
                    f"{spawned.name} exited with {spawned.process.returncode}\n{spawned.log_tail()}"
                )
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)  # polling a starting process; the caller bounds the wait
