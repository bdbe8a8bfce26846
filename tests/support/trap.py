"""Traps for side effects: a listener no guarded request may reach, a file no input may create."""

import asyncio
from dataclasses import dataclass, field

# Loopback too (Linux routes 127/8 to lo), but not 127.0.0.1, where the stack listens:
# the tests' Fabu denies it (FABU_EGRESS_DENY).
TRAP_HOST = "127.0.0.2"


@dataclass
class Listener:
    """A TCP server that counts who connects and answers with ``answer``."""

    host: str
    answer: bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    drip: bool = False
    connections: int = 0
    port: int = 0
    server: asyncio.Server | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(self.answer)
        try:
            while self.drip:  # one byte of body every 50 ms, forever
                await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"x")
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def __aenter__(self) -> "Listener":
        self.server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
