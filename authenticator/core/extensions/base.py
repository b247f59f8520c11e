"""The extension interface and the request views extensions get."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authenticator.core.credentials import Credential
    from authenticator.core.device import Call, Device


@dataclass
class McExt:
    """makeCredential as extensions see it; configure() fills the creation fields."""

    dev: Device
    call: Call
    rp_id: str
    rk: bool
    uv: bool
    cred_protect: int = 1
    hmac_secret: bool = False
    cred_blob: bytes | None = None
    large_blob_key: bool = False
    cred: Credential | None = None
    unsigned: dict[int, Any] = field(default_factory=dict)


@dataclass
class GaExt:
    dev: Device
    call: Call
    rp_id: str
    uv: bool
    up: bool
    cred: Credential
    unsigned: dict[int, Any] = field(default_factory=dict)


class Extension:
    name: str = ""

    def configure(self, x: McExt, value: Any) -> None:
        """Validate the input and set what the new credential must carry."""

    def at_make(self, x: McExt, value: Any) -> Any | None:
        """The authData extension output at makeCredential (None: no output)."""
        return None

    def at_get(self, x: GaExt, value: Any) -> Any | None:
        """The authData extension output at getAssertion (None: no output)."""
        return None
