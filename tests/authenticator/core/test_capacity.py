"""The discoverable-credential cap through makeCredential, and the count after crashes and
concurrent processes (the store's own counting is proven in tests/storage)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from hashlib import sha256
from pathlib import Path

import cbor2
import pytest
from fido2.ctap import CtapError
from fido2.ctap2 import Ctap2

from authenticator import Authenticator, Config
from authenticator.core.presence import CallbackPresence, PresenceRequest
from storage.memory import MemoryStore
from storage.sqlite import SqliteStore
from transports.inprocess import InProcessDevice

REPO = Path(__file__).resolve().parents[3]
ES256 = [{"type": "public-key", "alg": -7}]
CDH = sha256(b"capacity").digest()


def make(ctap: Ctap2, rp_id: str, user: bytes, rk: bool = True):
    return ctap.make_credential(
        CDH, {"id": rp_id}, {"id": user, "name": user.decode()}, ES256, options={"rk": rk}
    )


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "cap.db")
    yield s
    s.close()


def test_key_store_full_at_the_cap(store) -> None:
    auth = Authenticator(Config(max_discoverable=3), store)
    dev = InProcessDevice(auth)
    try:
        ctap = Ctap2(dev)
        for i in range(3):
            make(ctap, "a.example", b"user%d" % i)
        assert ctap.get_info().remaining_disc_creds == 0
        with pytest.raises(CtapError) as e:
            make(ctap, "b.example", b"other")
        assert e.value.code == CtapError.ERR.KEY_STORE_FULL
        assert store.count_discoverable() == 3 and store.rp_summary(
            sha256(b"b.example").digest()
        ) is None
        # replacing an account's credential needs no room; a non-resident one needs none
        make(ctap, "a.example", b"user1")
        make(ctap, "b.example", b"other", rk=False)
        assert store.count_discoverable() == 3
        # deleting one makes room again
        victim = store.credentials_for_rp(sha256(b"a.example").digest())[0]
        store.delete_credential(victim.credential_id)
        assert ctap.get_info().remaining_disc_creds == 1
        make(ctap, "b.example", b"other")
        assert store.count_discoverable() == 3
    finally:
        dev.close()


def _mc(user: bytes, rp_id: str = "a.example") -> bytes:
    req = {1: CDH, 2: {"id": rp_id}, 3: {"id": user}, 4: ES256, 7: {"rk": True}}
    return b"\x01" + cbor2.dumps(req, canonical=True)


def test_the_cap_holds_when_another_process_fills_the_store_meanwhile(tmp_path) -> None:
    """The last free slot is taken by another handle (another process) while this
    makeCredential waits for the touch: it must answer KEY_STORE_FULL, not pass the cap."""
    path = tmp_path / "race.db"
    other = Authenticator(Config(max_discoverable=2), SqliteStore(path))

    async def touch_while_other_registers(request: PresenceRequest) -> bool:
        assert (await other.handle_cbor(_mc(b"theirs")))[0] == 0
        return True

    mine = Authenticator(
        Config(max_discoverable=2), SqliteStore(path), CallbackPresence(touch_while_other_registers)
    )
    try:
        assert asyncio.run(other.handle_cbor(_mc(b"first")))[0] == 0
        assert asyncio.run(mine.handle_cbor(_mc(b"mine"))) == bytes([CtapError.ERR.KEY_STORE_FULL])
        assert mine.store.count_discoverable() == 2 == len(_rows(path))
        assert {r.user_id for r in mine.store.credentials_for_rp(sha256(b"a.example").digest())} == {
            b"first",
            b"theirs",
        }
    finally:
        mine.store.close()
        other.store.close()


MC_LOOP = textwrap.dedent(
    """
    import asyncio
    import sys
    from hashlib import sha256
    sys.path.insert(0, {repo!r})
    import cbor2
    from authenticator import Authenticator, Config
    from storage.sqlite import SqliteStore

    cap = int(sys.argv[3])
    auth = Authenticator(Config(max_discoverable=cap), SqliteStore(sys.argv[1]))
    tag = sys.argv[2].encode()
    cdh = sha256(b"x").digest()
    loop = asyncio.new_event_loop()
    i = 0
    print("ready", flush=True)
    while True:
        i += 1
        req = {{1: cdh, 2: {{"id": "rp%d.example" % (i % 7)}}, 3: {{"id": tag + b"-%d" % i}},
               4: [{{"type": "public-key", "alg": -7}}], 7: {{"rk": True}}}}
        out = loop.run_until_complete(
            auth.handle_cbor(b"\\x01" + cbor2.dumps(req, canonical=True))
        )
        if out[0] == 0:
            ad = cbor2.loads(out[1:])[2]
            n = int.from_bytes(ad[53:55], "big")
            print("ok", ad[55:55 + n].hex(), flush=True)
        else:
            print("err", out[0], flush=True)
    """
)


def _rows(path: Path) -> set[bytes]:
    db = sqlite3.connect(path)
    ids = {r[0] for r in db.execute("SELECT credential_id FROM credentials WHERE discoverable=1")}
    db.close()
    return ids


def test_count_and_cap_hold_through_sigkill_of_concurrent_makecredential_loops(tmp_path) -> None:
    """Two processes register at once against a small cap and are SIGKILLed mid-loop,
    several times: the count equals the rows, never passes the cap, and every credential
    a process reported as made is still there."""
    script = tmp_path / "mc_loop.py"
    script.write_text(MC_LOOP.format(repo=str(REPO)))
    path = tmp_path / "mc.db"
    SqliteStore(path).close()
    cap = 60
    made: set[bytes] = set()
    full_seen = False
    for round_ in range(4):
        procs = [
            subprocess.Popen(
                [sys.executable, str(script), str(path), f"p{round_}{i}", str(cap)],
                stdout=subprocess.PIPE, text=True,
            )
            for i in range(2)
        ]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"
        # read a different number of answers from each round, then kill mid-loop
        for _ in range(10 + 7 * round_):
            for p in procs:
                assert p.stdout is not None
                line = p.stdout.readline().split()
                assert line, "a writer died"
                if line[0] == "ok":
                    made.add(bytes.fromhex(line[1]))
                else:
                    assert int(line[1]) == CtapError.ERR.KEY_STORE_FULL
                    full_seen = True
        for p in procs:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
            assert p.stdout is not None
            p.stdout.close()
        rows = _rows(path)
        store = SqliteStore(path)
        try:
            assert store.count_discoverable() == len(rows) <= cap
            assert made <= rows
            auth = Authenticator(Config(max_discoverable=cap), store)
            info = cbor2.loads(asyncio.run(auth.handle_cbor(b"\x04"))[1:])
            assert info[0x14] == cap - len(rows)
        finally:
            store.close()
    assert full_seen  # the loops did reach the cap
