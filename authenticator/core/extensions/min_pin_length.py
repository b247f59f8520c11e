"""minPinLength: tells RPs on the authenticatorConfig allow-list the current minimum."""

from __future__ import annotations

from typing import Any

from authenticator.core.extensions.base import Extension, McExt


class MinPinLength(Extension):
    name = "minPinLength"

    def at_make(self, x: McExt, value: Any) -> Any | None:
        if value is not True:
            return None
        if x.rp_id not in x.dev.settings.min_pin_length_rp_ids:
            return None
        return x.dev.settings.min_pin_length
