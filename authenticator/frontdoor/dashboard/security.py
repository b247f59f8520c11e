"""Who may talk to the dashboard, and how forged requests are told apart.

The dashboard can approve presence, delete credentials and reset the authenticator, so:

* bound to loopback, only ``Host`` values naming loopback are served (a DNS-rebinding page
  on ``evil.example`` resolving to 127.0.0.1 sends ``Host: evil.example``);
* bound elsewhere, or when a token is configured, every request carries the token (header
  ``X-Fido-Emu-Token`` or the HttpOnly, SameSite=Strict cookie set by ``/?token=...``);
* state-changing requests need the custom header ``X-Fido-Emu-Csrf: 1`` (a cross-site page
  cannot send it without a CORS preflight, which is never granted), an ``Origin`` equal to
  the page's own, and no cross-site ``Sec-Fetch-Site``.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from authenticator.frontdoor.dashboard.http import Request

TOKEN_HEADER = "x-fido-emu-token"
CSRF_HEADER = "x-fido-emu-csrf"
SAFE_METHODS = ("GET", "HEAD")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(path: str | os.PathLike[str]) -> str:
    """The token in ``path``; a missing file gets a fresh random token (mode 0600)."""
    p = Path(path)
    if not p.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token
    token = p.read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{p}: the dashboard token must be at least 16 characters")
    return token


@dataclass
class AccessPolicy:
    """``token`` None: no token needed (loopback only). ``allowed_hosts`` None: any Host."""

    token: str | None
    allowed_hosts: frozenset[str] | None
    port: int

    @classmethod
    def for_binding(cls, host: str, port: int, token: str | None) -> AccessPolicy:
        if not is_loopback(host) and token is None:
            raise ValueError("a non-loopback dashboard needs a token")
        allowed = None
        if is_loopback(host):
            names = {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
            allowed = frozenset(n for name in names for n in (name, f"{name}:{port}"))
        return cls(token, allowed, port)

    @property
    def cookie_name(self) -> str:
        # cookies do not separate ports: two dashboards on one host must not collide
        return f"fido_emu_token_{self.port}"

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        if not presented:
            return False
        return hmac.compare_digest(presented.encode(), self.token.encode())

    def check(self, req: Request) -> tuple[int, str] | None:
        """None when the request may proceed, else (HTTP status, reason)."""
        host = req.headers.get("host", "")
        if self.allowed_hosts is not None and host.lower() not in self.allowed_hosts:
            return 403, "unexpected Host header"
        site = req.headers.get("sec-fetch-site")
        navigation = req.method in SAFE_METHODS and req.headers.get("sec-fetch-mode") == "navigate"
        if site in ("cross-site", "same-site") and not navigation:
            return 403, "cross-site request refused"
        presented = req.headers.get(TOKEN_HEADER) or req.cookies.get(self.cookie_name)
        if not self.token_ok(presented):
            return 401, "token required"
        if req.method not in SAFE_METHODS:
            if req.headers.get(CSRF_HEADER) != "1":
                return 403, f"missing {CSRF_HEADER} header"
            origin = req.headers.get("origin")
            if origin is not None and origin != f"http://{host}":
                return 403, "forged Origin"
        return None
