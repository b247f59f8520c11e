"""``fido-emu serve``: an HTTP JSON API for RP test suites in any language.

The W3C WebAuthn WebDriver-extension vocabulary under ``/webauthn/…`` (virtual
authenticators and their credentials), plus ``POST /webauthn/create`` and ``/webauthn/get``
taking WebAuthn L3 JSON options, presence, faults and power cycle. Same listener, limits and
token rules as the dashboard (:mod:`authenticator.frontdoor.dashboard.http`).
"""

from authenticator.frontdoor.api.server import ApiServer

__all__ = ["ApiServer"]
