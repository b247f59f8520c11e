"""fido-emulator: a software FIDO2/CTAP2 authenticator that real clients accept.

Layers (each package's docstring says what it may import):

- :mod:`authenticator.core` — the CTAP core: pure protocol logic, no I/O.
- :mod:`authenticator.frontdoor` — what people run: CLI, dashboard, HTTP API, run wiring.
- :mod:`authenticator.rp_testing` — helpers for RP developers: WebAuthn JSON client, browser
  bridges, pytest plugin.

The public names below are the core's, imported lazily so ``fido-emu --version`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authenticator.core.config import PROFILES, Config
    from authenticator.core.dispatch import Authenticator, CommandEvent
    from authenticator.core.presence import AutoApprove, CallbackPresence, Deny, PresenceRequest

__version__ = "0.2.0"

_LAZY = {
    "PROFILES": "authenticator.core.config",
    "Config": "authenticator.core.config",
    "Authenticator": "authenticator.core.dispatch",
    "CommandEvent": "authenticator.core.dispatch",
    "AutoApprove": "authenticator.core.presence",
    "CallbackPresence": "authenticator.core.presence",
    "Deny": "authenticator.core.presence",
    "PresenceRequest": "authenticator.core.presence",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "PROFILES",
    "Authenticator",
    "AutoApprove",
    "CallbackPresence",
    "CommandEvent",
    "Config",
    "Deny",
    "PresenceRequest",
    "__version__",
]
