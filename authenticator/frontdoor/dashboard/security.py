"""Who may talk to the dashboard, and how forged requests are told apart.

The dashboard can approve presence, delete credentials and reset the authenticator, so:

* bound to loopback, only ``Host`` values naming loopback are served (a DNS-rebinding page
  on ``evil.example`` resolving to 127.0.0.1 sends ``Host: evil.example``);
* every request carries the token, loopback included (loopback is not a trust boundary: any
  local process or user could otherwise approve presence, export keys or reset): the header
  ``X-Fido-Emu-Token``, ``Authorization: Bearer``, or the HttpOnly, SameSite=Strict cookie
  set by ``/?token=...`` (the HTTP API also takes ``?token=``);
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
    """``allowed_hosts`` None: any Host (bound beyond loopback; the token still guards)."""

    token: str
    allowed_hosts: frozenset[str] | None
    port: int
    # the HTTP API (scripts, not a page): ?token= on every request, no cookie, and no CSRF
    # header (a cross-site page cannot know the token: it is never in a cookie)
    api: bool = False

    @classmethod
    def for_binding(
        cls, host: str, port: int, token: str | None, *, api: bool = False
    ) -> AccessPolicy:
        if not token:
            raise ValueError("every listener needs a token")
        allowed = None
        if is_loopback(host):
            names = {"localhost", "127.0.0.1", "[::1]", host if ":" not in host else f"[{host}]"}
            allowed = frozenset(n for name in names for n in (name, f"{name}:{port}"))
        return cls(token, allowed, port, api)

    @property
    def cookie_name(self) -> str:
        # cookies do not separate ports: two dashboards on one host must not collide
        return f"fido_emu_token_{self.port}"

    def token_ok(self, presented: str | None) -> bool:
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
        presented = self.presented(req)
        if not self.token_ok(presented):
            return 401, "token required"
        if req.method not in SAFE_METHODS:
            if not self.api and req.headers.get(CSRF_HEADER) != "1":
                return 403, f"missing {CSRF_HEADER} header"
            origin = req.headers.get("origin")
            if origin is not None and origin != f"http://{host}":
                return 403, "forged Origin"
        return None

    def presented(self, req: Request) -> str | None:
        auth = req.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip()
        if req.headers.get(TOKEN_HEADER):
            return req.headers[TOKEN_HEADER]
        if self.api:
            return req.query.get("token")
        return req.cookies.get(self.cookie_name)


def write_token_file(path: str | os.PathLike[str], token: str) -> Path:
    """Write ``token`` to a new 0600 file (its folder 0700) for scripts; replaces a stale one."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = p.with_name(f".{p.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, p)
    return p


def default_token_path(kind: str, port: int) -> Path:
    """Where a generated token is written: the user's runtime dir, else the data dir."""
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isdir(base):
        return Path(base) / "fido-emu" / f"{kind}-{port}.token"
    from platformdirs import user_data_path

    return user_data_path("fido-emu") / f"{kind}-{port}.token"
