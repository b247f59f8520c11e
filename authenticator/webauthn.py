"""Deprecated import path (moved in 0.2.0): use ``authenticator.rp_testing.webauthn``.

Kept for one release; see docs/CHANGELOG.md.
"""

import warnings

from authenticator.rp_testing.webauthn import *  # noqa: F403

warnings.warn(
    "authenticator.webauthn moved to authenticator.rp_testing.webauthn",
    DeprecationWarning,
    stacklevel=2,
)
