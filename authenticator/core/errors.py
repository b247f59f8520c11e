"""CTAP status codes as the one way commands fail."""

from __future__ import annotations

from fido2.ctap import CtapError

ERR = CtapError.ERR


class CtapStatusError(Exception):
    """Raised anywhere in the core; the dispatcher turns it into a status byte."""

    def __init__(self, code: int, detail: str = "") -> None:
        super().__init__(detail or f"CTAP status 0x{code:02X}")
        self.code = int(code)
        self.detail = detail

    @property
    def name(self) -> str:
        try:
            return ERR(self.code).name
        except ValueError:
            return f"0x{self.code:02X}"


def status_name(code: int) -> str:
    try:
        return ERR(code).name
    except ValueError:
        return f"0x{code:02X}"
