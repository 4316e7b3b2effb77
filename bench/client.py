"""A small HTTP/1.1 client for the mutation benchmarks: keep-alive connections, JSON POSTs.

httpx added about 0.4 ms to each request's latency at concurrency 1 (measured with
``{ __typename }``), a cost of the client that the asyncpg side it is compared with does not
have. This client sends a prepared request line and headers, reads the status line, headers and
a body of Content-Length bytes, and nothing more: it talks only to the servers the bench
starts, which send a Content-Length with every /graphql response.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit


class HTTPStatusError(Exception):
    """The server returned a status other than 200."""


class Connection:
    """One keep-alive connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def post_json(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Content-Type: application/json"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"Content-Length: {len(payload)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)
        status_line, _, header_block = (
            (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").partition("\r\n")
        )
        length = None
        for line in header_block.split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise HTTPStatusError(f"The response has no Content-Length header: {status_line}")
        data = await self.reader.readexactly(length)
        status = int(status_line.split(" ", 2)[1])
        if status != 200:
            raise HTTPStatusError(f"The server returned {status_line}: {data[:500]!r}")
        return json.loads(data)


# uvicorn closes a keep-alive connection after 5 idle seconds; one idle for longer than this is
# closed here instead of being reused.
MAX_IDLE_SECONDS = 2.0


class ConnectionPool:
    """Keep-alive connections to one server; each request takes one and gives it back."""

    def __init__(self, base_url: str) -> None:
        address = urlsplit(base_url)
        assert address.hostname is not None and address.port is not None
        self.host = address.hostname
        self.port = address.port
        self.idle: list[tuple[float, Connection]] = []
        self.opened: list[Connection] = []

    async def post_json(self, path: str, body: Any, headers: dict[str, str]) -> Any:
        connection = None
        while self.idle and connection is None:
            idle_since, candidate = self.idle.pop()
            if time.monotonic() - idle_since < MAX_IDLE_SECONDS:
                connection = candidate
        if connection is None:
            connection = Connection(*await asyncio.open_connection(self.host, self.port))
            self.opened.append(connection)
        result = await connection.post_json(path, body, headers)
        # Only a connection whose response was read whole goes back; after an error it is left
        # out, and closed with the rest.
        self.idle.append((time.monotonic(), connection))
        return result

    async def close(self) -> None:
        for connection in self.opened:
            connection.writer.close()
        for connection in self.opened:
            try:
                await connection.writer.wait_closed()
            except ConnectionError:
                pass  # the server closed it first


@asynccontextmanager
async def connection_pool(base_url: str) -> AsyncIterator[ConnectionPool]:
    pool = ConnectionPool(base_url)
    try:
        yield pool
    finally:
        await pool.close()
