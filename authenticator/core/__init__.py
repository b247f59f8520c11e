"""The CTAP core: pure protocol logic with injected ports. No I/O.

What lives here: the dispatcher (:mod:`.dispatch`, the only module that knows every
command), the device state commands receive (:mod:`.device`), one module per CTAP command
(:mod:`.commands`), extensions (:mod:`.extensions`) and the model (config, credentials,
keys, counters, auth data, attestation statements, params, errors, PIN state, settings,
presence and other ports, faults).

What it may import: the standard library, cryptography/cbor2/fido2 primitives and
``storage.base`` (the protocol), ``storage.memory`` (the volatile default store) and
``storage.sealing`` (pure crypto). Never a store engine, a transport, a front door or the
RP-testing helpers (import-linter contracts in pyproject.toml enforce it).

Names are imported lazily so that ``authenticator.core.ports`` (all a transport needs)
stays cheap to import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from authenticator.core.config import PROFILES, Config
    from authenticator.core.device import Call, Device
    from authenticator.core.dispatch import COMMANDS, Authenticator, CommandEvent

_LAZY = {
    "Authenticator": "authenticator.core.dispatch",
    "COMMANDS": "authenticator.core.dispatch",
    "CommandEvent": "authenticator.core.dispatch",
    "Call": "authenticator.core.device",
    "Device": "authenticator.core.device",
    "Config": "authenticator.core.config",
    "PROFILES": "authenticator.core.config",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["Authenticator", "COMMANDS", "Call", "CommandEvent", "Config", "Device", "PROFILES"]
