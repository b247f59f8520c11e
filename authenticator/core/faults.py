"""Fault injection for negative RP tests: each fault changes exactly what it says.

Faults are armed from Python (``auth.faults``), the CLI (``--fault``) or the dashboard.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

FAULT_HELP = {
    "counter-regress": "the next signature counters go back by 1 from the last value",
    "counter-reset": "counters restart at 1",
    "counter-zero": "every counter reads 0",
    "bad-signature": "signatures are corrupted (one bit flipped)",
    "wrong-rpid-hash": "authData carries the SHA-256 of another rpId",
    "up-0": "the UP flag is cleared in authData",
    "uv-0": "the UV flag is cleared in authData",
    "bs-without-be": "BS=1 with BE=0 in authData",
    "error=CODE": "the next makeCredential or getAssertion fails with this CTAP status "
    "(hex or name)",
    "delay=SECONDS": "every command waits this long before running",
}


# CLI spelling -> the boolean field it sets
FLAG_FAULTS = {
    "counter-regress": "counter_regress",
    "counter-reset": "counter_reset",
    "counter-zero": "counter_zero",
    "bad-signature": "bad_signature",
    "wrong-rpid-hash": "wrong_rp_id_hash",
    "up-0": "clear_up",
    "uv-0": "clear_uv",
    "bs-without-be": "bs_without_be",
}


@dataclass
class Faults:
    counter_regress: bool = False
    counter_reset: bool = False
    counter_zero: bool = False
    bad_signature: bool = False
    wrong_rp_id_hash: bool = False
    clear_up: bool = False
    clear_uv: bool = False
    bs_without_be: bool = False
    next_error: int | None = None
    delay_s: float = 0.0
    _last: int = 0

    def arm(self, spec: str) -> None:
        """Arm one fault from its CLI spelling (see FAULT_HELP)."""
        from authenticator.core.errors import ERR

        name, _, value = spec.partition("=")
        name = name.strip().lower()
        if name in FLAG_FAULTS:
            setattr(self, FLAG_FAULTS[name], True)
        elif name == "error":
            value = value.strip()
            try:
                self.next_error = int(value, 16) if value.lower().startswith("0x") else int(value)
            except ValueError:
                try:
                    self.next_error = int(ERR[value.upper()])
                except KeyError:
                    raise ValueError(f"unknown CTAP error {value!r}") from None
        elif name == "delay":
            self.delay_s = float(value)
        else:
            raise ValueError(f"unknown fault {spec!r}; known: {', '.join(FAULT_HELP)}")

    def clear(self) -> None:
        last = self._last
        self.__init__()  # type: ignore[misc]
        self._last = last

    # the ceremony's commands: an armed error must not be spent on the getInfo or clientPIN
    # calls a client makes first
    ERROR_COMMANDS = frozenset({0x01, 0x02})

    def take_error(self, command: int | None = None) -> int | None:
        """The armed error for ``command`` (a CTAP command byte), spent once; None for
        commands outside the ceremony."""
        if command is not None and command not in self.ERROR_COMMANDS:
            return None
        code, self.next_error = self.next_error, None
        return code

    async def delay(self) -> None:
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)

    def counter(self, value: int) -> int:
        if self.counter_zero:
            value = 0
        elif self.counter_reset:
            value = 1
        elif self.counter_regress:
            value = max(0, self._last - 1)
        self._last = value
        return value

    def signature(self, sig: bytes) -> bytes:
        if not self.bad_signature or not sig:
            return sig
        return sig[:-1] + bytes([sig[-1] ^ 0x01])

    def rp_id_hash(self, value: bytes) -> bytes:
        if not self.wrong_rp_id_hash:
            return value
        import hashlib

        return hashlib.sha256(b"wrong.example").digest()

    def flags(self, flags: int) -> int:
        if self.clear_up:
            flags &= ~0x01
        if self.clear_uv:
            flags &= ~0x04
        if self.bs_without_be:
            flags = (flags | 0x10) & ~0x08
        return flags

    def active(self) -> list[str]:
        out = [name for name, attr in FLAG_FAULTS.items() if getattr(self, attr)]
        if self.next_error is not None:
            out.append(f"error=0x{self.next_error:02X}")
        if self.delay_s:
            out.append(f"delay={self.delay_s}")
        return out
