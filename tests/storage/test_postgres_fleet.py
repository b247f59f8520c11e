"""Several emulator instances on one PostgreSQL store (docs/fleet.md).

Instances are real ``fido-emu run --transport udp`` processes sharing one database and one
fleet key file; python-fido2 (Fido2Client + Fido2Server) drives them. Also: a server that
goes away mid-command (the command fails with one line, nothing half-written, the next
command succeeds) and SIGKILL of instances while they sign (no counter regression, no lost
credential).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from fido2.client import DefaultClientDataCollector, Fido2Client
from fido2.ctap import CtapError
from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2
from fido2.server import Fido2Server
from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

from storage.base import StoreError
from storage.postgres import PostgresStore, StoreUnavailable
from tests.authenticator.frontdoor.cli.test_run_udp import connect, free_port
from tests.conftest import PinInteraction

ORIGIN = "https://fleet.example"
RP = PublicKeyCredentialRpEntity(id="fleet.example", name="Fleet")
PIN = "4321"
ROOT = Path(__file__).resolve().parents[2]


class Instance:
    """One ``fido-emu run --transport udp`` process on the shared store."""

    def __init__(self, url: str, key: Path, profile: str) -> None:
        self.url, self.key, self.profile = url, key, profile
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.port, self.reply = free_port(), free_port()
        env = {**os.environ, "FIDO_EMU_KEY_FILE": str(self.key), "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "run", "--transport", "udp",
             "--udp-port", str(self.port), "--presence", "auto", "--profile", self.profile,
             "--store", self.url],
            stderr=subprocess.DEVNULL, env=env,
        )
        self.dev = connect(self.port, self.reply)

    def client(self) -> Fido2Client:
        return Fido2Client(self.dev, DefaultClientDataCollector(ORIGIN), PinInteraction(PIN))

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.dev.close()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        self.dev.close()


@pytest.fixture
def fleet(postgres_url, tmp_path):
    started: list[Instance] = []

    def make(profile: str = "security-key") -> Instance:
        inst = Instance(postgres_url, tmp_path / "fleet.key", profile)
        started.append(inst)
        return inst

    yield make
    for inst in started:
        inst.stop()


def register(inst: Instance, server: Fido2Server, name: str):
    user = PublicKeyCredentialUserEntity(id=name.encode(), name=name, display_name=name.title())
    options, state = server.register_begin(user, resident_key_requirement="required")
    return server.register_complete(state, inst.client().make_credential(options.public_key))


def login(inst: Instance, server: Fido2Server, creds: list, allow: bool = False) -> int:
    """A sign-in (discoverable unless ``allow``) verified by Fido2Server; its signCount."""
    options, state = server.authenticate_begin(creds if allow else None)
    selection = inst.client().get_assertion(options.public_key)
    response = selection.get_response(0)
    server.authenticate_complete(state, creds, response)
    return response.response.authenticator_data.counter


def manager(inst: Instance) -> CredentialManagement:
    ctap = Ctap2(inst.dev)
    client_pin = ClientPin(ctap)
    perm = ClientPin.PERMISSION.CREDENTIAL_MGMT
    if ctap.info.options.get("clientPin"):
        tok = client_pin.get_pin_token(PIN, perm)
    else:
        tok = client_pin.get_uv_token(perm)
    return CredentialManagement(ctap, client_pin.protocol, tok)


@pytest.mark.parametrize("profile", ["security-key", "synced-passkey"])
def test_passkey_made_on_a_signs_in_on_b_and_deletion_on_a_is_seen_on_b(fleet, profile):
    a, b = fleet(profile), fleet(profile)
    server = Fido2Server(RP)
    if profile == "security-key":
        ClientPin(Ctap2(a.dev)).set_pin(PIN)  # a setting made on A ...
        assert Ctap2(b.dev).get_info().options["clientPin"]  # ... is B's on its next command
    reg = register(a, server, "alice")
    creds = [reg.credential_data]
    counts = [login(b, server, creds), login(a, server, creds), login(b, server, creds)]
    if profile == "synced-passkey":
        assert counts == [0, 0, 0]  # synced passkeys: counter 0, as the profile says
    else:
        assert counts[0] > 0 and counts[0] < counts[1] < counts[2]  # monotonic across A and B
    # credentialManagement on B sees A's credential
    cm_b = manager(b)
    [rp] = cm_b.enumerate_rps()
    assert rp[CredentialManagement.RESULT.RP]["id"] == RP.id
    [cred] = cm_b.enumerate_creds(rp[CredentialManagement.RESULT.RP_ID_HASH])
    assert cred[CredentialManagement.RESULT.CREDENTIAL_ID]["id"] == reg.credential_data.credential_id
    # deleted through A: gone on B (enumeration and sign-in)
    manager(a).delete_cred(cred[CredentialManagement.RESULT.CREDENTIAL_ID])
    assert manager(b).get_metadata()[CredentialManagement.RESULT.EXISTING_CRED_COUNT] == 0
    with pytest.raises(Exception) as e:
        login(b, server, creds)
    assert "NO_CREDENTIALS" in repr(e.value) or "DEVICE_INELIGIBLE" in repr(e.value)


def test_sigkill_of_signing_instances_loses_no_credential_and_no_counter(fleet):
    """Each round: a thread signs on one instance, which is SIGKILLed after some signatures
    were acknowledged; the other instance must then count past every acknowledged value,
    and every acknowledged credential must still sign in."""
    a, b = fleet(), fleet()
    ClientPin(Ctap2(a.dev)).set_pin(PIN)
    server = Fido2Server(RP)
    made = [register(a, server, "u0")]
    highest = 0
    for round_ in range(4):
        victim, other = (a, b) if round_ % 2 == 0 else (b, a)
        acked: list[int] = []
        early: list[BaseException] = []
        enough = threading.Event()

        def sign(victim=victim, acked=acked, enough=enough, early=early) -> None:
            try:
                while True:
                    acked.append(login(victim, server, [made[0].credential_data], allow=True))
                    if len(acked) == 3:
                        enough.set()
            except Exception as e:  # after the kill: expected
                if len(acked) < 3:
                    early.append(e)
                enough.set()

        made.append(register(victim, server, f"u{round_ + 1}"))  # acknowledged: must survive
        worker = threading.Thread(target=sign, daemon=True)
        worker.start()
        assert enough.wait(120)
        victim.kill()  # mid-stream: a request may be in flight
        worker.join(60)
        assert not early, early
        assert acked and acked == sorted(acked) and acked[0] > highest
        highest = max(acked)
        after = login(other, server, [made[0].credential_data], allow=True)
        assert after > highest, f"counter went back: {after} after {highest}"
        highest = after
        victim.start()
    # every acknowledged credential is there and signs in, through either instance
    for i, reg in enumerate(made):
        inst = a if i % 2 else b
        options, state = server.authenticate_begin([reg.credential_data])
        selection = inst.client().get_assertion(options.public_key)
        server.authenticate_complete(state, [reg.credential_data], selection.get_response(0))


def test_server_gone_mid_command_fails_cleanly_and_the_next_succeeds(postgres_url, tmp_path):
    import psycopg

    store = PostgresStore(postgres_url, key_path=tmp_path / "k")
    try:
        store.set_state("n", b"1")

        def killed_mid_transaction(old):
            # the server drops this very connection while the transaction is open
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND state LIKE 'idle in transaction%'"
                )
            return b"2"

        with pytest.raises(StoreUnavailable) as e:
            store.update_state("n", killed_mid_transaction)
        assert "went away" in str(e.value) and "\n" not in str(e.value)
        assert postgres_url.split("@")[0].split(":")[-1] not in str(e.value)  # no password
        assert store.get_state("n") == b"1"  # nothing half-written
        assert store.update_state("n", lambda old: b"3") == b"3"  # the next one succeeds
        assert store.get_state("n") == b"3"
    finally:
        store.close()


def test_unreachable_server_is_one_line(postgres_url, tmp_path):
    url = postgres_url.rsplit("@", 1)[0] + "@127.0.0.1:1/x"
    with pytest.raises(StoreError) as e:
        PostgresStore(url, key_path=tmp_path / "k")
    msg = str(e.value)
    assert msg.startswith("cannot connect to PostgreSQL at 127.0.0.1:1/x:") and "\n" not in msg
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FIDO_EMU_KEY_FILE": str(tmp_path / "k")}
    proc = subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "info", "--store", url],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 3  # store/IO in the exit-code table
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("fido-emu: error: cannot connect to PostgreSQL at 127.0.0.1:1/x")


def test_unmigrated_database_and_wrong_key_file_are_refused(postgres_cluster, tmp_path):
    from storage.postgres import migrate

    url = postgres_cluster.new_database()
    with pytest.raises(StoreError, match="store migrate"):
        PostgresStore(url, key_path=tmp_path / "k")
    assert migrate(url) == (0, 1) and migrate(url) == (1, 1)
    PostgresStore(url, key_path=tmp_path / "k").close()
    with pytest.raises(StoreError, match="fleet key .* missing"):
        PostgresStore(url, key_path=tmp_path / "gone")
    (tmp_path / "other").write_bytes(b"FEK0" + os.urandom(32))
    with pytest.raises(StoreError, match="not the key"):
        PostgresStore(url, key_path=tmp_path / "other")


def test_reset_on_one_instance_gives_every_instance_the_new_device_secret(postgres_url, tmp_path):
    a = PostgresStore(postgres_url, key_path=tmp_path / "k")
    b = PostgresStore(postgres_url, key_path=tmp_path / "k")
    try:
        old = b.device_secret()
        a.wipe()
        assert b.device_secret() == a.device_secret() != old
        import psycopg

        with psycopg.connect(postgres_url) as conn:  # the secret itself is not in the database
            dump = b"".join(bytes(r[0]) for r in conn.execute("SELECT value FROM fido_meta"))
        assert a.device_secret() not in dump and (tmp_path / "k").read_bytes()[4:] not in dump
    finally:
        a.close()
        b.close()


def test_server_restart_fails_the_commands_meanwhile_and_then_works_again(tmp_path, caplog):
    from authenticator import Authenticator, Config
    from authenticator.core.presence import AutoApprove
    from storage.postgres import migrate
    from tests.storage.pg_server import start_cluster
    from transports.inprocess import InProcessDevice

    cluster = start_cluster()  # its own: this one is stopped under the store
    try:
        url = cluster.new_database()
        migrate(url)
        store = PostgresStore(url, key_path=tmp_path / "k")
        rec_state = b"kept"
        store.set_state("s", rec_state)
        ctap = Ctap2(InProcessDevice(Authenticator(
            Config.for_profile("security-key"), store, AutoApprove())))
        cluster.stop()
        with pytest.raises(StoreUnavailable) as e:
            store.set_state("s", b"lost")
        assert "\n" not in str(e.value)
        # a CTAP command meanwhile: ERR_OTHER, one log line, no traceback
        caplog.clear()
        with pytest.raises(CtapError) as ce:
            ctap.get_info()
        assert ce.value.code == CtapError.ERR.OTHER
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert errors and all(r.exc_info is None for r in errors)
        assert "PostgreSQL" in errors[0].getMessage()
        cluster.start()
        store.set_state("t", b"after")  # the next command works, on a fresh connection
        assert store.get_state("s") == rec_state and store.get_state("t") == b"after"
        assert ctap.get_info().versions  # and so does the next CTAP command
        store.close()
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(cluster.root, ignore_errors=True)
