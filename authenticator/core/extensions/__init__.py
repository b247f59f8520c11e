"""CTAP extensions, one module each, behind one small interface.

Each extension may ``configure`` a credential being made (credProtect level, hmac-secret
flag, ...), then produce its authenticator output at makeCredential (``at_make``) and at
getAssertion (``at_get``). Outputs returned as ``(key, value)`` in ``unsigned`` go into the
response map rather than authData (largeBlobKey).
"""

from __future__ import annotations

from authenticator.core.extensions.base import Extension, GaExt, McExt
from authenticator.core.extensions.cred_blob import CredBlob
from authenticator.core.extensions.cred_protect import CredProtect
from authenticator.core.extensions.hmac_secret import HmacSecret, HmacSecretMc
from authenticator.core.extensions.large_blob_key import LargeBlobKey
from authenticator.core.extensions.min_pin_length import MinPinLength

REGISTRY: dict[str, Extension] = {
    ext.name: ext
    for ext in (
        CredProtect(),
        HmacSecret(),
        HmacSecretMc(),
        CredBlob(),
        LargeBlobKey(),
        MinPinLength(),
    )
}

__all__ = ["REGISTRY", "Extension", "GaExt", "McExt"]
