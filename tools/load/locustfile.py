"""Example locustfile: virtual users with passkeys against the demo RP (tools/rp-demo).

    python tools/rp-demo/server.py --port 8080 &
    locust -f tools/load/locustfile.py --host http://localhost:8080 --headless -u 50 -r 10

Distributed (docs/fleet.md): one ``--master`` and any number of ``--worker`` processes,
on one machine or many. Settings (environment, so master and workers agree):

- ``FIDO_LOAD_CEREMONIES``: ceremonies per user, then the user stops; the master quits
  once users x that many ceremonies were reported (a run bounded by work, not time).
- ``FIDO_LOAD_PROFILE``: authenticator profile of every user (default synced-passkey).
- ``FIDO_LOAD_STORE``: a store URL/path shared by the users of a process (default: one
  memory store per user), e.g. a PostgreSQL store to put it under load too.
"""

from __future__ import annotations

import os

from locust import events
from locust.runners import MasterRunner, WorkerRunner

from authenticator.rp_testing.locust import DEMO_RP, WebAuthnUser, quit_after

PER_USER = int(os.environ.get("FIDO_LOAD_CEREMONIES") or 0) or None
_shared_store = None


class DemoRpUser(WebAuthnUser):
    shape = DEMO_RP
    profile = os.environ.get("FIDO_LOAD_PROFILE", "synced-passkey")
    ceremonies_per_user = PER_USER

    def make_store(self):
        global _shared_store
        spec = os.environ.get("FIDO_LOAD_STORE")
        if not spec:
            return None
        if _shared_store is None:
            from storage.sqlite import open_store

            _shared_store = open_store(spec)
        return _shared_store


@events.test_start.add_listener
def _bounded(environment, **_kw) -> None:
    if PER_USER and not isinstance(environment.runner, WorkerRunner):
        users = environment.parsed_options.num_users
        quit_after(environment, users * PER_USER)
    _ = MasterRunner  # the master and a standalone runner both watch
