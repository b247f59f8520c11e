"""Emulator-side WebAuthn ceremonies per second on one core (docs/fleet.md).

What one Locust worker process spends per ceremony on the authenticator side: the
WebAuthn client (options parsing, clientDataJSON, CBOR) plus the CTAP core (key
generation or signing, sealing, the store), through InProcessDevice, one process, one
thread. No HTTP and no RP verification: those are the RP's cost. A ceremony is one
registration or one sign-in; each virtual user registers once and signs in ``--logins``
times, like tools/load/locustfile.py.

    python tools/bench/ceremonies.py                       # memory store
    python tools/bench/ceremonies.py --store postgresql://… # a (migrated) PostgreSQL store
    python tools/bench/ceremonies.py --store /tmp/x.db      # SQLite

Prints one line per profile: ceremonies/s (median of --rounds rounds) and the range.
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from authenticator.core import Authenticator, Config  # noqa: E402
from authenticator.core.presence import AutoApprove  # noqa: E402
from authenticator.rp_testing.webauthn import WebAuthnClient  # noqa: E402
from transports.inprocess import InProcessDevice  # noqa: E402

ORIGIN, RP_ID = "https://bench.example", "bench.example"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def creation(user: bytes) -> dict:
    return {"publicKey": {
        "rp": {"id": RP_ID, "name": "Bench"},
        "user": {"id": b64(user), "name": user.hex(), "displayName": "Bench user"},
        "challenge": b64(os.urandom(32)),
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "authenticatorSelection": {"residentKey": "required", "userVerification": "preferred"},
        "attestation": "none",
    }}


def request(cred_id: str) -> dict:
    return {"publicKey": {
        "rpId": RP_ID, "challenge": b64(os.urandom(32)), "userVerification": "preferred",
        "allowCredentials": [{"type": "public-key", "id": cred_id}],
    }}


def one_round(store, profile: str, users: int, logins: int) -> float:
    auth = Authenticator(Config.for_profile(profile), store, AutoApprove())
    client = WebAuthnClient(InProcessDevice(auth, transport=auth.config.transports[0]), ORIGIN)
    if profile == "security-key":
        client.pin = "123456"
        from fido2.ctap2 import ClientPin, Ctap2

        if not Ctap2(client.device).get_info().options.get("clientPin"):
            ClientPin(Ctap2(client.device)).set_pin("123456")
    start = time.perf_counter()
    for _ in range(users):
        cred = client.create(creation(os.urandom(16)))
        for _ in range(logins):
            client.get(request(cred["id"]))
    return users * (1 + logins) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", default=":memory:", help="store path or URL (default memory)")
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--logins", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profiles", default="synced-passkey,security-key")
    args = p.parse_args(argv)
    from storage.sqlite import open_store

    for profile in args.profiles.split(","):
        store = open_store(args.store)
        try:
            rates = [one_round(store, profile, args.users, args.logins)
                     for _ in range(args.rounds)]
        finally:
            store.close()
        kind = args.store.split("://")[0] if "://" in args.store else (
            "memory" if args.store == ":memory:" else "sqlite")
        print(f"{kind:10} {profile:15} {statistics.median(rates):7.0f} ceremonies/s "
              f"(min {min(rates):.0f}, max {max(rates):.0f}; {args.rounds} rounds of "
              f"{args.users} users x (1 registration + {args.logins} sign-ins))", flush=True)


if __name__ == "__main__":
    main()
