"""The SQLite store: survives restarts, seals keys, never rolls a counter back."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import textwrap
from hashlib import sha256
from pathlib import Path

import cbor2
from fido2.ctap2 import AttestationResponse, Ctap2
from fido2.webauthn import AuthenticatorData

from authenticator import Authenticator, Config
from authenticator.core import keys
from storage.sqlite import SqliteStore
from transports.inprocess import InProcessDevice

CDH = sha256(b"cd").digest()
REPO = Path(__file__).resolve().parents[2]


def make_rk(auth: Authenticator, user: bytes = b"u1") -> AttestationResponse:
    dev = InProcessDevice(auth)
    try:
        return Ctap2(dev).make_credential(
            CDH, {"id": "example.com"}, {"id": user, "name": "n"}, [{"type": "public-key", "alg": -7}],
            options={"rk": True},
        )
    finally:
        dev.close()


def assert_once(auth: Authenticator) -> AuthenticatorData:
    raw = asyncio.run(auth.handle_cbor(b"\x02" + cbor2.dumps({1: "example.com", 2: CDH})))
    assert raw[0] == 0, raw
    return AuthenticatorData(cbor2.loads(raw[1:])[2])


def test_restart_keeps_credentials_and_counters(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    auth = Authenticator(Config(), store)
    att = make_rk(auth)
    counters = [assert_once(auth).counter for _ in range(5)]
    store.close()
    auth2 = Authenticator(Config(), SqliteStore(path))
    after = assert_once(auth2).counter
    assert after > counters[-1]
    assert len(auth2.store.credentials_for_rp(sha256(b"example.com").digest())) == 1
    # the signature still verifies with the public key from registration
    pub = att.auth_data.credential_data.public_key
    raw = asyncio.run(auth2.handle_cbor(b"\x02" + cbor2.dumps({1: "example.com", 2: CDH})))
    resp = cbor2.loads(raw[1:])
    pub.verify(resp[2] + CDH, resp[3])


def test_private_keys_never_in_plaintext(tmp_path):
    path = tmp_path / "s.db"
    store = SqliteStore(path)
    auth = Authenticator(Config(), store)
    make_rk(auth)
    cred = auth.credentials.from_record(auth.store.credentials_for_rp(sha256(b"example.com").digest())[0])
    raw = keys.private_bytes(-7, auth.credentials.private_key(cred))
    store.close()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db") and not p.name.endswith(".key"))
    assert raw not in blob
    assert (os.stat(tmp_path / "s.db.key").st_mode & 0o777) == 0o600


def test_passphrase_protected_key_file(tmp_path, monkeypatch):
    path = tmp_path / "p.db"
    SqliteStore(path, passphrase="correct horse").close()
    assert SqliteStore(path, passphrase="correct horse").device_secret()
    import pytest

    from storage.sqlite import KeyFileError

    with pytest.raises(KeyFileError):
        SqliteStore(path, passphrase="wrong")
    with pytest.raises(KeyFileError):
        SqliteStore(path, passphrase=None)


SIGNER = textwrap.dedent(
    """
    import asyncio, sys, cbor2
    from hashlib import sha256
    sys.path.insert(0, {repo!r})
    from authenticator import Authenticator, Config
    from storage.sqlite import SqliteStore
    auth = Authenticator(Config(counter_lease=8), SqliteStore(sys.argv[1]))
    cdh = sha256(b"x").digest()
    if not auth.store.credentials_for_rp(sha256(b"example.com").digest()):
        req = {{1: cdh, 2: {{"id": "example.com"}}, 3: {{"id": b"u"}},
               4: [{{"type": "public-key", "alg": -7}}], 7: {{"rk": True}}}}
        assert asyncio.run(auth.handle_cbor(b"\\x01" + cbor2.dumps(req)))[0] == 0
    while True:
        raw = asyncio.run(auth.handle_cbor(b"\\x02" + cbor2.dumps({{1: "example.com", 2: cdh}})))
        assert raw[0] == 0
        ad = cbor2.loads(raw[1:])[2]
        print(int.from_bytes(ad[33:37], "big"), flush=True)
    """
)


def test_sigkill_never_rolls_counter_back(tmp_path):
    script = tmp_path / "signer.py"
    script.write_text(SIGNER.format(repo=str(REPO)))
    db = tmp_path / "k.db"
    last = -1
    rng = random.Random(7)
    for _ in range(8):
        proc = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True)
        seen = []
        target = rng.randint(1, 40)
        assert proc.stdout is not None
        while len(seen) < target:
            line = proc.stdout.readline()
            assert line, "signer died"
            seen.append(int(line))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        assert seen[0] > last, (seen[0], last)
        assert seen == sorted(seen) and len(set(seen)) == len(seen)
        last = seen[-1]
    store = SqliteStore(db)
    assert len(store.credentials_for_rp(sha256(b"example.com").digest())) == 1


def test_two_processes_on_one_store_never_reuse_counter_values(tmp_path):
    """`fido-emu run` and the CLI may share a store: interleaved signing stays monotonic."""
    path = tmp_path / "shared.db"
    a = Authenticator(Config(counter_lease=4), SqliteStore(path))
    make_rk(a)
    b = Authenticator(Config(counter_lease=4), SqliteStore(path))
    seen = []
    for i in range(30):
        seen.append(assert_once(a if i % 3 else b).counter)
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
