"""Presence from the terminal: the user types Enter to touch, 'n' to decline.

The answer comes from the controlling terminal (``/dev/tty``), never from stdin: stdin may
be the options pipe of ``webauthn create`` or /dev/null under nohup, systemd or ``&``.
Without a terminal, or at end of input, every touch is DENIED (logged once): a prompt
that nobody can answer must never approve.
"""

from __future__ import annotations

import asyncio
import logging
import os

from authenticator.core.presence import PresenceRequest, UvOutcome

log = logging.getLogger("fido_emu")


class TerminalPresence:
    def __init__(self, uv_outcome: UvOutcome = "approve", tty: str = "/dev/tty") -> None:
        self.uv_outcome = uv_outcome
        self.tty = tty
        self._fd: int | None = None
        self._buffer = b""
        self._eof = False
        self._warned = False

    def _open(self) -> int | None:
        if self._fd is None and not self._eof:
            try:
                self._fd = os.open(self.tty, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError as e:
                self._give_up(f"no terminal to ask ({self.tty}: {e.strerror})")
        return self._fd

    def _give_up(self, why: str) -> None:
        self._eof = True
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if not self._warned:
            self._warned = True
            log.warning("presence prompt: %s; every touch is denied "
                        "(use --presence auto to approve, or run on a terminal)", why)

    def _write(self, text: str) -> None:
        if self._fd is not None:
            try:
                os.write(self._fd, text.encode())
            except OSError:
                pass

    async def _readline(self) -> str | None:
        """One line from the terminal; None at end of input or on a read error."""
        fd = self._fd
        assert fd is not None
        loop = asyncio.get_running_loop()
        def wake(ready: asyncio.Future) -> None:
            if not ready.done():
                ready.set_result(None)

        while b"\n" not in self._buffer:
            ready = loop.create_future()
            loop.add_reader(fd, wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
            try:
                chunk = os.read(fd, 1024)
            except BlockingIOError:
                continue
            except OSError as e:  # EIO: the terminal went away
                self._give_up(f"terminal read failed ({e.strerror})")
                return None
            if not chunk:
                self._give_up("end of input on the terminal")
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode(errors="replace")

    async def _ask(self, question: str) -> bool:
        if self._open() is None:
            return False
        self._buffer = b""  # type-ahead from before the question does not answer it
        try:
            import termios

            termios.tcflush(self._fd, termios.TCIFLUSH)
        except (ImportError, OSError):
            pass
        self._write(question)
        answer = await self._readline()
        if answer is None:
            return False
        return answer.strip().lower() not in ("n", "no")

    async def request_presence(self, request: PresenceRequest) -> bool:
        who = request.rp_id or "the authenticator"
        user = f" as {request.user_name}" if request.user_name else ""
        return await self._ask(
            f"[fido-emu] {request.command} for {who}{user} via {request.transport}: "
            "touch? [Enter = yes, n = no] "
        )

    async def verify_user(self, request: PresenceRequest) -> UvOutcome:
        ok = await self.request_presence(request)
        return self.uv_outcome if ok else "deny"

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
