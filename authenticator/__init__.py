"""fido-emulator's CTAP core: pure protocol logic with injected ports (no I/O)."""

from authenticator.config import PROFILES, Config
from authenticator.core import Authenticator, CommandEvent
from authenticator.presence import AutoApprove, CallbackPresence, Deny, PresenceRequest

__all__ = [
    "PROFILES",
    "Authenticator",
    "AutoApprove",
    "CallbackPresence",
    "CommandEvent",
    "Config",
    "Deny",
    "PresenceRequest",
]
