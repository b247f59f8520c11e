"""Load-test an RP's WebAuthn endpoints with Locust: every virtual user owns an authenticator.

``WebAuthnUser`` is a Locust ``HttpUser`` whose :meth:`register` and :meth:`login` run real
ceremonies: options from the RP, then ``navigator.credentials.create()/get()`` answered by
the user's own emulated authenticator (:class:`~authenticator.rp_testing.webauthn.WebAuthnClient`
over an in-process :class:`~authenticator.core.Authenticator`), then the RP's verification.
A ceremony counts as a success only if the RP says it verified it. Each ceremony is
reported to Locust as one request of type ``WEBAUTHN`` (name ``register`` / ``login``)
besides the HTTP requests it is made of.

RPs differ in URL paths and JSON shapes: :class:`RpShape` says how to talk to one, with
presets for this repo's demo RP (:data:`DEMO_RP`), SimpleWebAuthn's example server
(:data:`SIMPLEWEBAUTHN`) and a py_webauthn-style server (:data:`PY_WEBAUTHN`).

Example: ``tools/load/locustfile.py``; recipe and measured figures: docs/fleet.md.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from locust import HttpUser, between, events, task
from locust.exception import StopUser

from authenticator.core import Authenticator, Config
from authenticator.core.presence import AutoApprove
from authenticator.rp_testing.webauthn import WebAuthnClient, WebAuthnError
from transports.inprocess import InProcessDevice

CEREMONY = "WEBAUTHN"

# Locust runs users as greenlets in one thread; each authenticator call runs a private
# asyncio loop, which must not be re-entered by another greenlet while it waits. Locust
# has monkey-patched threading by now, so this lock yields to other greenlets (their HTTP
# I/O goes on) instead of blocking the thread. Authenticator work is CPU-bound anyway.
_AUTHENTICATOR_LOCK = threading.Lock()


class RpRefused(Exception):
    """The RP did not verify a ceremony (its answer says why)."""


def _unwrap_public_key(begin: dict) -> dict:
    return begin.get("publicKey", begin)


@dataclass(frozen=True)
class RpShape:
    """How one RP's WebAuthn endpoints look. Each ``*_body`` callable builds a JSON body;
    ``options`` pulls the WebAuthn options JSON out of a begin answer; ``verified`` reads
    the RP's verdict from a complete answer. ``None`` as a begin body means GET."""

    register_begin: str
    register_complete: str
    login_begin: str
    login_complete: str
    register_begin_body: Callable[[str], dict | None] = lambda username: {"username": username}
    login_begin_body: Callable[[str | None], dict | None] = lambda username: {}
    complete_body: Callable[[dict, dict], dict] = lambda begin, credential: credential
    options: Callable[[dict], dict] = _unwrap_public_key
    verified: Callable[[dict], bool] = lambda answer: answer.get("verified") is True


DEMO_RP = RpShape(
    "/register/begin", "/register/complete", "/authenticate/begin", "/authenticate/complete",
    complete_body=lambda begin, credential: {"flow": begin["flow"], "credential": credential},
    verified=lambda answer: answer.get("ok") is True,
)
"""tools/rp-demo/server.py: flows carried in the JSON body."""

SIMPLEWEBAUTHN = RpShape(
    "/generate-registration-options", "/verify-registration",
    "/generate-authentication-options", "/verify-authentication",
    register_begin_body=lambda username: None,
    login_begin_body=lambda username: None,
)
"""SimpleWebAuthn's example server: GET options, POST the credential JSON, the challenge in
the session cookie (Locust's client keeps cookies per user), ``{"verified": true}``."""

PY_WEBAUTHN = RpShape(
    "/generate-registration-options", "/verify-registration-response",
    "/generate-authentication-options", "/verify-authentication-response",
)
"""A py_webauthn-style server: POST ``{"username"}`` for options (``options_to_json``
output), POST the credential JSON back, ``{"verified": true}``."""


@dataclass
class VirtualAuthenticator:
    """One user's authenticator: its own store (memory unless ``store`` is given)."""

    origin: str
    profile: str = "synced-passkey"
    store: Any = None
    overrides: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.store is None:
            from storage.memory import MemoryStore

            self.store = MemoryStore()
        self.auth = Authenticator(
            Config.for_profile(self.profile, **self.overrides), self.store, AutoApprove()
        )
        self.device = InProcessDevice(self.auth, transport=self.auth.config.transports[0])
        self.client = WebAuthnClient(self.device, self.origin)

    def create(self, options: dict) -> dict:
        with _AUTHENTICATOR_LOCK:
            return self.client.create(options)

    def get(self, options: dict) -> dict:
        with _AUTHENTICATOR_LOCK:
            return self.client.get(options)


class WebAuthnUser(HttpUser):
    """A Locust user with a passkey-capable authenticator. Subclass it, set ``host`` (or pass
    ``--host``), ``shape`` and perhaps ``profile``; the default task registers once, then
    signs in (weights in :attr:`tasks` of a subclass change the mix)."""

    abstract = True
    shape: RpShape = DEMO_RP
    profile: str = "synced-passkey"
    origin: str | None = None  # default: the host URL (the RP's origin)
    ceremonies_per_user: int | None = None  # then the user stops (a bounded run)
    wait_time = between(0, 0)

    def on_start(self) -> None:
        self.username = f"load-{secrets.token_hex(6)}"
        store = self.make_store()
        self.authenticator = VirtualAuthenticator(
            self.origin or self.host.rstrip("/"), self.profile, store
        )
        # a store shared by many users holds every user's passkey: at sign-in this user
        # picks its own account, as a person does in the account chooser of a shared phone
        # (otherwise it could present another user's passkey that the RP is still registering)
        self.shared_store = store is not None
        self.credential_id: str | None = None
        self.registered = 0
        self.logins = 0

    def make_store(self) -> Any:
        """The user's store; None gives a memory store (override for e.g. PostgreSQL)."""
        return None

    # -- ceremonies ---------------------------------------------------------------------
    def _post_or_get(self, path: str, body: dict | None, name: str) -> dict:
        if body is None:
            r = self.client.get(path, name=name)
        else:
            r = self.client.post(path, json=body, name=name)
        try:
            answer = r.json()
        except ValueError as e:
            raise RpRefused(f"{path}: HTTP {r.status_code}, not JSON") from e
        if r.status_code != 200:
            raise RpRefused(f"{path}: HTTP {r.status_code}: {answer}")
        return answer

    def _ceremony(self, name: str, run: Callable[[], dict]) -> dict | None:
        start = time.perf_counter()
        answer, error = None, None
        try:
            answer = run()
        except (RpRefused, WebAuthnError) as e:
            error = e
        except Exception as e:  # connection errors and the like: a failed ceremony
            error = e
        self.environment.events.request.fire(
            request_type=CEREMONY, name=name, response_time=(time.perf_counter() - start) * 1000,
            response_length=len(json.dumps(answer)) if answer else 0, exception=error,
            context={},
        )
        return answer

    def register(self) -> dict | None:
        """One registration ceremony; the RP's answer, or None if it failed."""
        shape = self.shape

        def run() -> dict:
            begin = self._post_or_get(
                shape.register_begin, shape.register_begin_body(self.username), "register/begin"
            )
            credential = self.authenticator.create({"publicKey": shape.options(begin)})
            answer = self._post_or_get(
                shape.register_complete, shape.complete_body(begin, credential),
                "register/complete",
            )
            if not shape.verified(answer):
                raise RpRefused(f"registration not verified: {answer}")
            self.credential_id = credential["id"]
            return answer

        answer = self._ceremony("register", run)
        self.registered += answer is not None
        return answer

    def login(self) -> dict | None:
        """One sign-in ceremony (discoverable: no username sent unless the shape does)."""
        shape = self.shape

        def run() -> dict:
            begin = self._post_or_get(
                shape.login_begin, shape.login_begin_body(None), "login/begin"
            )
            options = dict(shape.options(begin))
            if self.shared_store and self.credential_id and not options.get("allowCredentials"):
                options["allowCredentials"] = [{"type": "public-key", "id": self.credential_id}]
            credential = self.authenticator.get({"publicKey": options})
            answer = self._post_or_get(
                shape.login_complete, shape.complete_body(begin, credential), "login/complete"
            )
            if not shape.verified(answer):
                raise RpRefused(f"sign-in not verified: {answer}")
            return answer

        answer = self._ceremony("login", run)
        self.logins += answer is not None
        return answer

    @task
    def register_then_login(self) -> None:
        """Register once, then sign in; stop after ``ceremonies_per_user`` if set."""
        if not self.registered:
            self.register()
        else:
            self.login()
        self.done = getattr(self, "done", 0) + 1
        if self.ceremonies_per_user is not None and self.done >= self.ceremonies_per_user:
            raise StopUser()


def quit_after(environment: Any, ceremonies: int) -> None:
    """On the master (or a standalone runner): stop the test once ``ceremonies`` WEBAUTHN
    requests (successes and failures) were reported, so a run is bounded by work done,
    not by time."""
    import gevent

    def watch() -> None:
        while True:
            stats = environment.runner.stats
            done = sum(
                e.num_requests for (name, kind), e in stats.entries.items() if kind == CEREMONY
            )
            if done >= ceremonies:
                environment.runner.quit()
                return
            gevent.sleep(0.5)

    gevent.spawn(watch)


__all__ = [
    "CEREMONY",
    "DEMO_RP",
    "PY_WEBAUTHN",
    "SIMPLEWEBAUTHN",
    "RpRefused",
    "RpShape",
    "VirtualAuthenticator",
    "WebAuthnUser",
    "events",
    "quit_after",
]
