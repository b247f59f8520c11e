"""Deprecated import path (moved in 0.2.0): use ``authenticator.rp_testing.pytest_plugin``.

Kept for one release; see docs/CHANGELOG.md.
"""

import warnings

from authenticator.rp_testing.pytest_plugin import *  # noqa: F403

warnings.warn(
    "authenticator.pytest_plugin moved to authenticator.rp_testing.pytest_plugin",
    DeprecationWarning,
    stacklevel=2,
)
