"""A TCP proxy in a process of its own, frozen (SIGSTOP) to make a service unresponsive."""

from __future__ import annotations

import signal
import subprocess

from harness.processes import free_port

# --------------------------------------------------------------------------------------
# A TCP proxy to freeze

_PROXY_SOURCE = """
import asyncio, sys

listen_port, target_port = int(sys.argv[1]), int(sys.argv[2])

async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()

async def handle(client_reader, client_writer):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))

async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()

asyncio.run(main())
"""


class TcpProxy:
    """A TCP proxy from 127.0.0.1:`port` to 127.0.0.1:`target_port`, in a process of its own.

    `freeze()` stops that process (SIGSTOP): the kernel still accepts connections and data on
    its sockets, but nothing answers, as with a peer that hangs on an open connection;
    `thaw()` lets it go on (SIGCONT).
    """

    def __init__(self, target_port: int, *, port: int | None = None) -> None:
        self.target_port = target_port
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TcpProxy:
        import sys

        self.process = subprocess.Popen(
            [sys.executable, "-c", _PROXY_SOURCE, str(self.port), str(self.target_port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline() != b"listening\n":  # ends when the process does
            raise RuntimeError(f"the TCP proxy to port {self.target_port} did not start")
        return self

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()  # SIGKILL ends a stopped process too
            self.process.wait(timeout=10)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
