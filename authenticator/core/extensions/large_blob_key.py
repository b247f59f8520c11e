"""largeBlobKey: a per-credential key for the large-blob array, for discoverable creds."""

from __future__ import annotations

from typing import Any

from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.extensions.base import Extension, GaExt, McExt


class LargeBlobKey(Extension):
    name = "largeBlobKey"

    def configure(self, x: McExt, value: Any) -> None:
        if value is not True:
            raise CtapStatusError(ERR.INVALID_OPTION, "largeBlobKey must be true")
        if not x.rk:
            raise CtapStatusError(ERR.INVALID_OPTION, "largeBlobKey needs a discoverable credential")
        x.large_blob_key = True

    def at_make(self, x: McExt, value: Any) -> Any | None:
        assert x.cred is not None
        x.unsigned[0x05] = x.dev.device_keys.large_blob_key(x.cred.id)
        return None

    def at_get(self, x: GaExt, value: Any) -> Any | None:
        if value is not True:
            raise CtapStatusError(ERR.INVALID_OPTION, "largeBlobKey must be true")
        record = x.cred.record
        if record is not None and record.large_blob_key:
            x.unsigned[0x07] = x.dev.device_keys.large_blob_key(x.cred.id)
        return None
