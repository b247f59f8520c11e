"""The paths callers really take, each against its floor: the core awaited in a loop,
``InProcessDevice.call``, python-fido2's ``Ctap2`` over it, the WebAuthn JSON client, and
(when installed) another software authenticator from PyPI doing the same work.

All on the durable SQLite store (a temporary file), except where a row says memory.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable
from pathlib import Path

import cbor2
from measure import CDH, Result, interleaved

from authenticator import Authenticator, Config
from storage.memory import MemoryStore
from storage.sqlite import SqliteStore
from transports.inprocess import InProcessDevice

ES256 = [{"type": "public-key", "alg": -7}]
ORIGIN = "https://bench.example"


def mc_request(rk: bool, user: bytes = b"bench-user", rp: str = "bench.example") -> bytes:
    req = {1: CDH, 2: {"id": rp}, 3: {"id": user, "name": "b"}, 4: ES256}
    if rk:
        req[7] = {"rk": True}
    return b"\x01" + cbor2.dumps(req, canonical=True)


def ga_request(rp: str, cred_id: bytes | None) -> bytes:
    req: dict = {1: rp, 2: CDH}
    if cred_id is not None:
        req[3] = [{"type": "public-key", "id": cred_id}]
    return b"\x02" + cbor2.dumps(req, canonical=True)


def credential_id(response: bytes) -> bytes:
    assert response[0] == 0, f"CTAP status 0x{response[0]:02X}"
    auth_data = cbor2.loads(response[1:])[2]
    n = int.from_bytes(auth_data[53:55], "big")
    return auth_data[55 : 55 + n]


def core_batch(loop: asyncio.AbstractEventLoop, auth: Authenticator, make: Callable[[], bytes]):
    """The core awaited in a tight loop: ``await auth.handle_cbor(request)``."""

    async def batch(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            response = await auth.handle_cbor(make())
        elapsed = time.perf_counter() - t
        assert response[0] == 0, f"CTAP status 0x{response[0]:02X}"
        return elapsed

    return lambda n: loop.run_until_complete(batch(n))


def sync_batch(fn: Callable[[], object]):
    def batch(n: int) -> float:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        return time.perf_counter() - t

    return batch


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def run(tmp: Path, n: int, rounds: int) -> list[Result]:
    from fido2.ctap2 import Ctap2

    from authenticator.rp_testing.webauthn import WebAuthnClient

    results: list[Result] = []
    loop = asyncio.new_event_loop()
    auth = Authenticator(Config(), SqliteStore(tmp / "paths.db"))
    rk_id = credential_id(loop.run_until_complete(auth.handle_cbor(mc_request(True))))
    nr_id = credential_id(loop.run_until_complete(auth.handle_cbor(mc_request(False))))
    ga_rk, ga_nr = ga_request("bench.example", rk_id), ga_request("bench.example", nr_id)
    ga_disc = ga_request("bench.example", None)
    mc_nr = mc_request(False)
    users = iter(range(10**9))

    def add(r: Result, group: str) -> None:
        r.group = group
        results.append(r)
        print(f"  {r.name}: {r.median_us:.0f} µs, ratio {r.median_ratio:.2f}", flush=True)

    g = "core loop (await handle_cbor)"
    add(interleaved("getAssertion, allowList, resident", core_batch(loop, auth, lambda: ga_rk),
                    n, rounds, "sign", target=1.8), g)
    add(interleaved("getAssertion, allowList, non-resident",
                    core_batch(loop, auth, lambda: ga_nr), n, rounds, "sign", target=1.8), g)
    add(interleaved("getAssertion, discoverable", core_batch(loop, auth, lambda: ga_disc),
                    n, rounds, "sign"), g)
    mem = Authenticator(Config(), MemoryStore())
    mem_id = credential_id(loop.run_until_complete(mem.handle_cbor(mc_request(True))))
    ga_mem = ga_request("bench.example", mem_id)
    add(interleaved("getAssertion, allowList, resident, memory store",
                    core_batch(loop, mem, lambda: ga_mem), n, rounds, "sign",
                    note="no counter-lease fsync, no SQLite freshness check"), g)
    add(interleaved("makeCredential, non-resident", core_batch(loop, auth, lambda: mc_nr),
                    n, rounds, "keygen+sign", target=2.2), g)
    add(interleaved("makeCredential, resident (durable write)",
                    core_batch(loop, auth,
                               lambda: mc_request(True, next(users).to_bytes(8, "big"))),
                    max(5, n // 10), rounds, "keygen+sign", floor_n=50), g)

    g = "real callers"
    dev = InProcessDevice(auth)
    add(interleaved("InProcessDevice.call getAssertion", sync_batch(lambda: dev.call(0x10, ga_rk)),
                    n, rounds, "sign", target=3.0), g)
    add(interleaved("InProcessDevice.call makeCredential, non-resident",
                    sync_batch(lambda: dev.call(0x10, mc_nr)), n, rounds, "keygen+sign"), g)
    ctap = Ctap2(dev)
    allow = [{"type": "public-key", "id": rk_id}]
    add(interleaved("python-fido2 Ctap2.get_assertion over InProcessDevice",
                    sync_batch(lambda: ctap.get_assertion("bench.example", CDH, allow)),
                    max(10, n // 5), rounds, "sign",
                    note="python-fido2's own per-call cost"), g)

    client = WebAuthnClient(dev, ORIGIN)
    created = client.create(_creation_options(b"json-user", resident=False))
    request = _request_options(created["rawId"])
    add(interleaved("WebAuthn JSON client get (RequestOptionsJSON in, response JSON out)",
                    sync_batch(lambda: client.get(request)), max(10, n // 5), rounds, "sign"), g)
    add(interleaved("WebAuthn JSON client create, non-resident",
                    sync_batch(lambda: client.create(
                        _creation_options(next(users).to_bytes(8, "big"), resident=False))),
                    max(10, n // 5), rounds, "keygen+sign"), g)
    dev.close()
    auth.store.close()

    results.extend(_other_authenticators(n, rounds))
    return results


def _creation_options(user: bytes, resident: bool) -> dict:
    return {
        "challenge": b64u(os.urandom(32)),
        "rp": {"id": "bench.example", "name": "Bench"},
        "user": {"id": b64u(user), "name": "bench", "displayName": "Bench"},
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "attestation": "none",
        "authenticatorSelection": {
            "residentKey": "required" if resident else "discouraged",
            "userVerification": "discouraged",
        },
    }


def _request_options(raw_id: str) -> dict:
    return {
        "challenge": b64u(os.urandom(32)),
        "rpId": "bench.example",
        "allowCredentials": [{"type": "public-key", "id": raw_id}],
        "userVerification": "discouraged",
    }


def _other_authenticators(n: int, rounds: int) -> list[Result]:
    """soft-webauthn (PyPI) against our JSON client on the same work: one registration and
    one assertion from WebAuthn options, keys in memory (it has no storage, so we use the
    memory store here). soft-webauthn pins fido2<2, so it is not a dependency: put it on
    PYTHONPATH (``pip install --no-deps --target DIR soft-webauthn``) to include it."""
    try:
        from soft_webauthn import SoftWebauthnDevice
    except Exception as e:  # noqa: BLE001 - absent or incompatible: the rows say so
        print(f"  soft-webauthn not importable ({type(e).__name__}): comparison skipped")
        return []
    from authenticator.rp_testing.webauthn import WebAuthnClient

    results: list[Result] = []
    g = "vs another software authenticator (same work, keys in memory)"
    soft = SoftWebauthnDevice()

    def soft_options(user: bytes) -> dict:
        return {"publicKey": {
            "challenge": os.urandom(32), "rp": {"id": "bench.example", "name": "Bench"},
            "user": {"id": user, "name": "bench", "displayName": "Bench"},
            "pubKeyCredParams": [{"alg": -7, "type": "public-key"}], "attestation": "none",
        }}

    soft.create(soft_options(b"u"), ORIGIN)
    get_options = {"publicKey": {"challenge": os.urandom(32), "rpId": "bench.example"}}
    auth = Authenticator(Config(attestation="none"), MemoryStore())
    dev = InProcessDevice(auth)
    client = WebAuthnClient(dev, ORIGIN)
    created = client.create(_creation_options(b"u", resident=False))
    request = _request_options(created["rawId"])
    users = iter(range(10**9))
    m = max(10, n // 5)
    for r in (
        interleaved("soft-webauthn create", sync_batch(
            lambda: soft.create(soft_options(b"u"), ORIGIN)), m, rounds, "keygen+sign"),
        interleaved("fido-emulator JSON client create (memory store)", sync_batch(
            lambda: client.create(_creation_options(next(users).to_bytes(8, "big"), False))),
            m, rounds, "keygen+sign"),
        interleaved("soft-webauthn get", sync_batch(lambda: soft.get(get_options, ORIGIN)),
                    m, rounds, "sign"),
        interleaved("fido-emulator JSON client get (memory store)",
                    sync_batch(lambda: client.get(request)), m, rounds, "sign"),
    ):
        r.group = g
        results.append(r)
        print(f"  {r.name}: {r.median_us:.0f} µs, ratio {r.median_ratio:.2f}", flush=True)
    dev.close()
    return results
