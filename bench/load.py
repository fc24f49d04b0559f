"""Load from wrk (Debian: `apt-get install wrk`): one POST body, repeated for a fixed time over N connections.

wrk is C, so the load generator is never the bottleneck on its core, as a Python one would be against the
baseline. A Lua script sets the request and prints wrk's summary as JSON.
"""

import json
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SCRIPT = """
local body = io.open(os.getenv("BENCH_BODY_FILE")):read("*a")
wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("BENCH_KEY")

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '\\n{"requests": %d, "seconds": %f, "p50_ms": %f, "p99_ms": %f, "bad": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    errors.status + errors.connect + errors.read + errors.write + errors.timeout))
end
"""


@dataclass(frozen=True)
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    failed: int  # answers that were not 2xx (a 503 when the pool sheds), or socket errors


def require_wrk() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("the benchmark drives load with wrk: apt-get install wrk")
    return found


def run_wrk(url: str, key: str, body: dict[str, object], *, connections: int, seconds: int) -> LoadResult:
    """wrk on CPU 1 (the servers are pinned to CPU 0), one thread."""
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as directory:
        script = Path(directory) / "post.lua"
        script.write_text(SCRIPT)
        body_file = Path(directory) / "body.json"
        body_file.write_text(json.dumps(body))
        completed = subprocess.run(
            [
                "taskset", "-c", "1", require_wrk(), "--threads", "1", "--connections", str(connections),
                "--duration", f"{seconds}s", "--timeout", "30s", "--script", str(script), url,
            ],
            env={"BENCH_BODY_FILE": str(body_file), "BENCH_KEY": key},
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
    summary = json.loads(completed.stdout.strip().splitlines()[-1])
    return LoadResult(
        summary["requests"] / summary["seconds"], summary["p50_ms"], summary["p99_ms"], summary["bad"]
    )
