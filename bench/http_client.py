"""One keep-alive HTTP/1.1 connection that POSTs prepared bodies, for the recordUsage batches (wrk repeats one body;
each batch needs its own events).

httpx costs about 0.8 ms of Python per 230 KB request on the load generator's core, time the gateway would be
charged for in a serial benchmark; this writes the request in one piece and reads the answer by its
Content-Length, as little work as a client can do, so what is timed is the gateway.
"""

import asyncio
from types import TracebackType
from urllib.parse import urlsplit


class KeepAliveConnection:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __aenter__(self) -> "KeepAliveConnection":
        self.streams = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.streams is not None:
            self.streams[1].close()
            await self.streams[1].wait_closed()

    async def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        """(status, body) of the answer; the server must answer with a Content-Length (uvicorn does for a
        whole response)."""
        assert self.streams is not None, "use the connection in `async with`"
        reader, writer = self.streams
        lines = [f"POST {path} HTTP/1.1", f"Host: {self.host}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ")[1])
        fields = dict(line.split(":", 1) for line in head[1:] if ":" in line)
        length = {name.strip().lower(): value.strip() for name, value in fields.items()}["content-length"]
        return status, await reader.readexactly(int(length))
