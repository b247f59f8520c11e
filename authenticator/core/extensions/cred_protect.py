"""credProtect: levels 1-3; enforcement lives in get_assertion's credential filter."""

from __future__ import annotations

from typing import Any

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.extensions.base import Extension, McExt

UV_OPTIONAL, UV_OPTIONAL_WITH_LIST, UV_REQUIRED = 1, 2, 3


def allowed(level: int, *, uv: bool, via_allow_list: bool) -> bool:
    """May a credential of this level be used in this request (CTAP 2.1 §12.1)?"""
    if level >= UV_REQUIRED:
        return uv
    if level == UV_OPTIONAL_WITH_LIST:
        return uv or via_allow_list
    return True


class CredProtect(Extension):
    name = "credProtect"

    def configure(self, x: McExt, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "credProtect must be an integer")
        if value not in (1, 2, 3):
            raise CtapStatusError(ERR.INVALID_OPTION, "credProtect level must be 1-3")
        x.cred_protect = value

    def at_make(self, x: McExt, value: Any) -> Any | None:
        return x.cred_protect
