"""InProcessDevice: commands run on the caller's thread; waits, cancel and keepalives work."""

from __future__ import annotations

import asyncio
import threading
from hashlib import sha256

import cbor2
import pytest
from fido2.ctap import STATUS, CtapError
from fido2.ctap2 import Ctap2
from fido2.hid import CTAPHID

from authenticator import Authenticator
from authenticator.core.presence import AutoApprove, CallbackPresence, PresenceRequest
from transports.inprocess import InProcessDevice

CDH = sha256(b"inprocess").digest()
ES256 = [{"type": "public-key", "alg": -7}]


class ThreadRecorder(AutoApprove):
    """Answers at once and remembers which thread asked."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[int] = []

    def immediate(self, request: PresenceRequest) -> bool | None:
        self.threads.append(threading.get_ident())
        return True


def make_credential(ctap: Ctap2) -> bytes:
    att = ctap.make_credential(CDH, {"id": "a.example"}, {"id": b"u", "name": "u"}, ES256)
    return att.auth_data.credential_data.credential_id


def test_immediate_presence_runs_on_the_callers_thread() -> None:
    presence = ThreadRecorder()
    auth = Authenticator(presence=presence)
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        cred_id = make_credential(ctap)
        ctap.get_assertion("a.example", CDH, [{"type": "public-key", "id": cred_id}])
        assert presence.threads == [threading.get_ident()] * 2
    finally:
        dev.close()


def test_a_waiting_command_continues_on_the_callers_thread() -> None:
    """Presence that suspends several times (as a real prompt does) still completes."""
    seen: list[int] = []

    async def touch(request: PresenceRequest) -> bool:
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append(threading.get_ident())
        return True

    auth = Authenticator(presence=CallbackPresence(touch))
    dev = InProcessDevice(auth)
    statuses: list[STATUS] = []
    try:
        data = dev.call(CTAPHID.CBOR, _mc_request(), None, statuses.append)
        assert data[0] == 0
        assert seen == [threading.get_ident()]
        assert statuses == [STATUS.UPNEEDED, STATUS.PROCESSING]
        # and the next command takes the fast path again on the same loop
        assert dev.call(CTAPHID.CBOR, b"\x04")[0] == 0
    finally:
        dev.close()


def test_cancel_event_ends_a_presence_wait() -> None:
    waiting = threading.Event()

    async def never(request: PresenceRequest) -> bool:
        waiting.set()
        await asyncio.Event().wait()
        return True

    auth = Authenticator(presence=CallbackPresence(never))
    dev = InProcessDevice(auth)
    cancel = threading.Event()
    outcome: list[bytes] = []

    def worker() -> None:
        outcome.append(dev.call(CTAPHID.CBOR, _mc_request(), cancel))

    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert waiting.wait(30)
        cancel.set()
        thread.join(30)
        assert not thread.is_alive()
        assert outcome == [bytes([CtapError.ERR.KEEPALIVE_CANCEL])]
        # the device stays usable after a cancelled command
        auth.presence = AutoApprove()
        assert dev.call(CTAPHID.CBOR, _mc_request())[0] == 0
    finally:
        dev.close()


def test_errors_inside_a_suspended_command_reach_the_caller() -> None:
    async def broken(request: PresenceRequest) -> bool:
        await asyncio.sleep(0)
        raise RuntimeError("presence source failed")

    auth = Authenticator(presence=CallbackPresence(broken))
    dev = InProcessDevice(auth)
    try:
        # the core turns an unexpected error into CTAP2_ERR_OTHER, never a traceback
        with pytest.raises(CtapError) as e:
            Ctap2(dev).make_credential(CDH, {"id": "a.example"}, {"id": b"u"}, ES256)
        assert e.value.code == CtapError.ERR.OTHER
    finally:
        dev.close()


def test_callers_inside_a_running_loop_are_served() -> None:
    """A synchronous python-fido2 call made from a coroutine cannot nest our loop on the
    caller's thread; it is served by a private loop thread instead."""
    auth = Authenticator()
    dev = InProcessDevice(auth)

    async def inside() -> bytes:
        return make_credential(Ctap2(dev))

    try:
        cred_id = asyncio.run(inside())
        assert cred_id
        assert dev.call(CTAPHID.CBOR, b"\x04")[0] == 0
    finally:
        dev.close()


def test_threads_sharing_a_device_take_turns() -> None:
    auth = Authenticator()
    dev = InProcessDevice(auth)
    results: list[int] = []

    def worker() -> None:
        for _ in range(20):
            results.append(dev.call(CTAPHID.CBOR, _mc_request())[0])

    threads = [threading.Thread(target=worker) for _ in range(3)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [0] * 60
    finally:
        dev.close()


def _mc_request() -> bytes:
    req = {1: CDH, 2: {"id": "a.example"}, 3: {"id": b"u", "name": "u"}, 4: ES256}
    return b"\x01" + cbor2.dumps(req, canonical=True)
