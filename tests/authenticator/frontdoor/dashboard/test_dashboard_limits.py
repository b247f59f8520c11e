"""Resource limits of the dashboard listener against a real ``fido-emu run --dashboard``
process (issue 13 D6, D7): unauthenticated bodies are never buffered, live-log streams and
connections are capped below the descriptor limit, and a flood does not flood the log."""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from dashboard_support import http

ROOT = Path(__file__).resolve().parents[4]


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``fido-emu run --transport udp --dashboard`` with its stderr collected by a thread."""

    def __init__(self, tmp: Path, *, nofile: int | None = None) -> None:
        self.port = free_port()
        self.udp, self.reply = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM)

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "run", "--transport", "udp",
             "--udp-port", str(self.udp), "--udp-reply-port", str(self.reply), "--presence", "auto",
             "--dashboard", f"127.0.0.1:{self.port}", "--store", str(tmp / "store.db")],
            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, cwd=ROOT, env=env,
            preexec_fn=limit,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._collect, daemon=True).start()
        line = self.wait_for("dashboard on")
        url = line.split("dashboard on ")[1].split()[0]
        self.token = url.split("?token=")[1] if "?token=" in url else None
        self.wait_for("serving profile")

    def _collect(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in list(self.lines):
                if text in line:
                    return line
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not printed; stderr:\n{''.join(self.lines)}")

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        return "".join(self.lines)


@pytest.fixture
def served(tmp_path):
    s = Served(tmp_path)
    yield s
    s.stop()


async def _big_unauthenticated(port: int, size: int) -> None:
    """A POST announcing and sending ``size`` bytes without a token; any answer or reset."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, TimeoutError):
        return
    head = (f"POST /api/credentials/import HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nX-Fido-Emu-Csrf: 1\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()
    try:
        writer.write(head)
        chunk = b"[" + b" " * (64 * 1024 - 1)
        for _ in range(size // len(chunk)):
            writer.write(chunk)
            await asyncio.wait_for(writer.drain(), 10)
        await asyncio.wait_for(reader.read(1024), 10)
    except (OSError, TimeoutError):
        pass
    finally:
        writer.close()


async def test_D6_unauthenticated_4mb_bodies_do_not_grow_rss(served: Served):
    """Issue 13 D6: 80 unauthenticated 4 MB requests took RSS from 42 MB to 236 MB."""
    target = type("T", (), {"port": served.port, "token": served.token})()
    for _ in range(5):  # warm up: imports, the first responses
        await http(target, "GET", "/api/state")
        await _big_unauthenticated(served.port, 256 * 1024)
    before = served.rss_kb()
    flood = [asyncio.ensure_future(_big_unauthenticated(served.port, 4 * 1024 * 1024))
             for _ in range(80)]
    await asyncio.wait(flood, timeout=60)  # a deadline, not a pause: done as soon as all end
    for task in flood:
        task.cancel()
    growth_mb = (served.rss_kb() - before) / 1024
    assert growth_mb < 24, f"RSS grew by {growth_mb:.0f} MB"
    assert served.proc.poll() is None
    assert (await http(target, "GET", "/api/state")).status == 200


async def _open_stream(port: int, token: str | None) -> tuple | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
    except (OSError, TimeoutError):
        return None
    auth = f"X-Fido-Emu-Token: {token}\r\n" if token else ""
    writer.write(f"GET /api/events HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n{auth}\r\n".encode())
    try:
        await asyncio.wait_for(writer.drain(), 5)
    except (OSError, TimeoutError):
        writer.close()
        return None
    return reader, writer


async def test_D7_hundreds_of_live_log_streams_neither_exhaust_fds_nor_flood_the_log(tmp_path):
    """Issue 13 D7: 346 never-ending SSE connections exhausted the descriptors, the
    dashboard died and logged 10k ERROR lines in 4 s."""
    served = Served(tmp_path, nofile=256)
    target = type("T", (), {"port": served.port, "token": served.token})()
    streams = []
    try:
        opened = await asyncio.gather(*(_open_stream(served.port, served.token)
                                        for _ in range(400)))
        streams = [s for s in opened if s is not None]
        # every stream got an answer: a live stream or 503, not a hang
        async def head(reader: asyncio.StreamReader) -> bytes:
            try:
                return await reader.readuntil(b"\r\n")
            except (OSError, asyncio.IncompleteReadError):
                return b""

        tasks = [asyncio.ensure_future(head(reader)) for reader, _ in streams]
        await asyncio.wait(tasks, timeout=20)  # a deadline for all of them together
        heads = [t.result() if t.done() else b"" for t in tasks]
        for t in tasks:
            t.cancel()
        live = sum(b" 200 " in h for h in heads)
        assert 1 <= live <= 16 and sum(b" 503 " in h for h in heads) >= 100
        assert served.proc.poll() is None
        assert served.fds() < 200
        r = await asyncio.wait_for(http(target, "GET", "/api/state"), 10)
        assert r.status == 200
    finally:
        for _, writer in streams:
            writer.close()
        err = served.stop()
    errors = [line for line in err.splitlines() if "ERROR" in line or "Traceback" in line]
    assert len(errors) < 5, errors[:5]
    assert len(err.splitlines()) < 60, err[-2000:]
