"""credBlob: a small opaque blob stored with the credential, returned on request."""

from __future__ import annotations

from typing import Any

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.extensions.base import Extension, GaExt, McExt


class CredBlob(Extension):
    name = "credBlob"

    def configure(self, x: McExt, value: Any) -> None:
        if not isinstance(value, bytes):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "credBlob must be bytes")
        if len(value) <= x.dev.config.max_cred_blob_length:
            x.cred_blob = value

    def at_make(self, x: McExt, value: Any) -> Any | None:
        return x.cred_blob is not None

    def at_get(self, x: GaExt, value: Any) -> Any | None:
        if value is not True:
            return None
        return x.cred.cred_blob or b""
