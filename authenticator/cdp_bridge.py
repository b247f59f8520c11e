"""Deprecated import path (moved in 0.2.0): use ``authenticator.rp_testing.cdp_bridge``.

Kept for one release; see docs/CHANGELOG.md.
"""

import warnings

from authenticator.rp_testing.cdp_bridge import *  # noqa: F403

warnings.warn(
    "authenticator.cdp_bridge moved to authenticator.rp_testing.cdp_bridge",
    DeprecationWarning,
    stacklevel=2,
)
