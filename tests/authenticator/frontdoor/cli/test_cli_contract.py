"""The fido-emu command line contract (issue 11): one-line errors, the exit-code table,
counters like a real key's, faults that hit the ceremony, presence that never approves by
accident. Every response is verified by python-fido2's Fido2Server or py_webauthn."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[4]
ORIGIN = "https://example.com"


def fido_emu(*args: str, stdin: str | None = "", env: dict | None = None, **kw):
    return subprocess.run(
        [sys.executable, "-m", "authenticator.frontdoor.cli", *args],
        input=stdin, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, **kw,
    )


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def creation(rk: str = "required") -> dict:
    return {
        "rp": {"name": "Example", "id": "example.com"},
        "user": {"id": b64(b"user-1"), "name": "alice", "displayName": "Alice"},
        "challenge": b64(os.urandom(32)),
        "pubKeyCredParams": [{"type": "public-key", "alg": -7}],
        "authenticatorSelection": {"residentKey": rk},
    }


def counter_of(response: dict) -> int:
    return int.from_bytes(unb64(response["response"]["authenticatorData"])[33:37], "big")


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def store(tmp_path) -> Path:
    path = tmp_path / "rp.db"
    out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(path),
                   stdin=json.dumps(creation()))
    assert out.returncode == 0, out.stderr
    return path


# -- counters ---------------------------------------------------------------------------
def test_consecutive_cli_gets_count_plus_one(store):
    """A clean exit gives the unused lease back: 10 CLI calls -> counters n+1, n+2, ..."""
    seen = []
    for _ in range(10):
        out = fido_emu("webauthn", "get", "--origin", ORIGIN, "--store", str(store),
                       stdin=json.dumps({"challenge": b64(os.urandom(16))}))
        assert out.returncode == 0, out.stderr
        seen.append(counter_of(json.loads(out.stdout)))
    assert seen == list(range(seen[0], seen[0] + 10)), seen


def test_a_crash_jumps_at_most_one_lease(store, tmp_path):
    """Only a crash may jump: the next value is at most counter_lease (256) + 1 above the
    last one handed out (the lease's unused values are skipped), never back."""
    first = fido_emu("webauthn", "get", "--origin", ORIGIN, "--store", str(store),
                     stdin=json.dumps({"challenge": b64(b"a" * 16)}))
    before = counter_of(json.loads(first.stdout))
    code = (
        "import os, sys; from authenticator.frontdoor.cli import common;"
        "common.close_authenticator = lambda auth: os._exit(0);"  # die without giving back
        "from authenticator.frontdoor.cli import main; main(sys.argv[1:])"
    )
    crashed = subprocess.run(
        [sys.executable, "-c", code, "webauthn", "get", "--origin", ORIGIN, "--store", str(store)],
        input=json.dumps({"challenge": b64(b"b" * 16)}), capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert crashed.returncode == 0
    after = fido_emu("webauthn", "get", "--origin", ORIGIN, "--store", str(store),
                     stdin=json.dumps({"challenge": b64(b"c" * 16)}))
    value = counter_of(json.loads(after.stdout))
    assert before + 1 + 1 < value <= before + 1 + 256 + 1


# -- faults -------------------------------------------------------------------------------
@pytest.mark.parametrize("verb", ["create", "get"])
def test_fault_error_hits_the_ceremony(store, verb):
    options = creation("discouraged") if verb == "create" else {"challenge": b64(b"x" * 16)}
    out = fido_emu("webauthn", verb, "--origin", ORIGIN, "--store", str(store),
                   "--fault", "error=OPERATION_DENIED", stdin=json.dumps(options))
    assert out.returncode == 1
    line = one_line(out.stderr)
    assert "NotAllowedError" in line and "OPERATION_DENIED (0x27)" in line
    assert ("makeCredential" if verb == "create" else "getAssertion") in line


def test_fault_error_from_python_maps_to_dom_exception():
    from authenticator import Authenticator, Config
    from authenticator.rp_testing.webauthn import WebAuthnClient, WebAuthnError
    from transports.inprocess import InProcessDevice

    auth = Authenticator(Config.for_profile("security-key"))
    dev = InProcessDevice(auth)
    try:
        client = WebAuthnClient(dev, ORIGIN)
        auth.faults.arm("error=CREDENTIAL_EXCLUDED")
        with pytest.raises(WebAuthnError) as e:
            client.create(creation())
        assert e.value.name == "InvalidStateError" and e.value.ctap_status == 0x19
        reg = client.create(creation())  # spent once
        assert reg["type"] == "public-key"
    finally:
        dev.close()


# -- usage, exit codes, one-line errors ------------------------------------------------------
def test_version_before_and_after_the_verb():
    from authenticator import __version__

    for argv in (["--version"], ["webauthn", "get", "--version"], ["info", "--version"]):
        out = fido_emu(*argv)
        assert out.returncode == 0 and out.stdout.strip() == f"fido-emu {__version__}", argv


def test_verbose_after_the_verb(store):
    out = fido_emu("webauthn", "get", "--origin", ORIGIN, "--store", str(store), "-v",
                   stdin=json.dumps({"challenge": b64(b"v" * 16)}))
    assert out.returncode == 0, out.stderr
    assert "getAssertion rp=example.com status=OK" in out.stderr  # INFO logging is on


def test_options_dash_is_stdin(store):
    out = fido_emu("webauthn", "get", "--origin", ORIGIN, "--store", str(store), "--options", "-",
                   stdin=json.dumps({"challenge": b64(b"s" * 16)}))
    assert out.returncode == 0, out.stderr


def test_set_errors_list_fields_and_types(tmp_path):
    out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(tmp_path / "n.db"),
                   "--set", "nosuch=1", stdin=json.dumps(creation()))
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert "builtin_uv (true|false)" in line and "algorithms (comma list)" in line
    out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(tmp_path / "n.db"),
                   "--set", "builtin_uv=maybe", stdin=json.dumps(creation()))
    assert out.returncode == 2 and "builtin_uv takes true|false, not 'maybe'" in one_line(out.stderr)
    assert not (tmp_path / "n.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["webauthn", "get", "--origin", ORIGIN],
        ["credentials", "list"],
        ["info"],
        ["pin", "retries"],
    ],
)
def test_read_commands_refuse_a_missing_store(tmp_path, argv):
    missing = tmp_path / "typo.db"
    out = fido_emu(*argv, "--store", str(missing), stdin=json.dumps({"challenge": "AAAA"}))
    assert out.returncode == 3
    assert str(missing) in one_line(out.stderr)
    assert list(tmp_path.iterdir()) == []  # nothing created
    created = fido_emu(*argv, "--store", str(missing), "--create",
                       stdin=json.dumps({"challenge": "AAAA"}))
    assert created.returncode != 3 and missing.exists()


def test_missing_default_store_is_refused_too(tmp_path):
    out = fido_emu("credentials", "list", env={"FIDO_EMU_STORE": str(tmp_path / "none.db")})
    assert out.returncode == 3 and "none.db" in one_line(out.stderr)


def test_help_carries_the_exit_code_table():
    for argv in (["--help"], ["webauthn", "get", "--help"]):
        out = fido_emu(*argv)
        assert out.returncode == 0
        for line in ("0  success", "1  refused", "2  usage", "3  store or I/O"):
            assert line in out.stdout, (argv, out.stdout)


def test_demo_help_says_memory():
    out = fido_emu("demo", "--help")
    assert "in-memory" in out.stdout


def test_usage_error_is_status_two_and_one_line():
    out = fido_emu("webauthn", "get", "--origin", ORIGIN, "--bogus")
    assert out.returncode == 2
    line = one_line(out.stderr)
    assert line.startswith("fido-emu: error:") and "--bogus" in line
    assert "--help" in line


def test_broken_pipe_is_quiet(store):
    """`fido-emu webauthn get | head -c0`: the reader is gone before we write."""
    r, w = os.pipe()
    os.close(r)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "authenticator.frontdoor.cli", "webauthn", "get",
             "--origin", ORIGIN, "--store", str(store)],
            input=json.dumps({"challenge": b64(b"p" * 16)}).encode(), stdout=w,
            stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
        )
    finally:
        os.close(w)
    assert proc.returncode == 0
    assert proc.stderr == b""


def test_internal_errors_are_one_line_without_traceback(store):
    """The core's ERR_OTHER path logs with log.exception; the CLI shows one line."""
    code = (
        "import sys; from authenticator.core import dispatch\n"
        "async def boom(*a): raise RuntimeError('boom')\n"
        "dispatch.COMMANDS[0x02] = ('getAssertion', boom)\n"
        "from authenticator.frontdoor.cli import main; sys.exit(main(sys.argv[1:]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "webauthn", "get", "--origin", ORIGIN, "--store", str(store)],
        input=json.dumps({"challenge": b64(b"o" * 16)}), capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert out.returncode == 1
    assert "Traceback" not in out.stderr
    assert "RuntimeError: boom" in out.stderr and "OTHER (0x7F)" in out.stderr
    assert len([ln for ln in out.stderr.splitlines() if ln.strip()]) == 2  # log line + error
    # and a bug in the CLI itself
    code = (
        "import sys; from authenticator.rp_testing import webauthn\n"
        "def bad(*a, **k): raise KeyError('x')\n"
        "webauthn.WebAuthnClient.get = bad\n"
        "from authenticator.frontdoor.cli import main; sys.exit(main(sys.argv[1:]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "webauthn", "get", "--origin", ORIGIN, "--store", str(store)],
        input=json.dumps({"challenge": b64(b"o" * 16)}), capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert out.returncode == 1 and "internal error: KeyError" in one_line(out.stderr)


def test_webauthn_get_imports_only_what_it_needs(store):
    code = (
        "import sys; from authenticator.frontdoor.cli import main; rc = main(sys.argv[1:]);"
        "print(sorted(m for m in sys.modules if m.startswith(('authenticator.frontdoor.dashboard',"
        "'authenticator.frontdoor.cli.hybrid', 'authenticator.frontdoor.cli.manage', 'transports.hybrid',"
        "'fido2.client', 'fido2.hid', 'fido2.ctap2', 'cryptography.x509'))), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "webauthn", "get", "--origin", ORIGIN, "--store", str(store)],
        input=json.dumps({"challenge": b64(b"i" * 16)}), capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120,
    )
    assert out.stderr.strip().splitlines()[-1] == "[]", out.stderr


# -- presence -------------------------------------------------------------------------------
def test_prompt_never_reads_stdin(tmp_path):
    """`webauthn create --presence prompt` with the options on stdin and no terminal:
    the touch is denied (it used to read the answer from the options pipe)."""
    out = fido_emu("webauthn", "create", "--origin", ORIGIN, "--store", str(tmp_path / "p.db"),
                   "--presence", "prompt", stdin=json.dumps(creation()) + "\n\n\n",
                   start_new_session=True)  # no controlling terminal
    assert out.returncode == 1
    assert "OPERATION_DENIED" in out.stderr and "no terminal" in out.stderr


def test_prompt_reads_the_terminal(tmp_path):
    """A pty as the terminal: Enter approves, 'n' declines, end of input denies for good."""
    import asyncio
    import pty

    from authenticator.core.presence import PresenceRequest
    from authenticator.frontdoor.cli.prompt import TerminalPresence

    master, slave = pty.openpty()
    presence = TerminalPresence(tty=os.ttyname(slave))
    req = PresenceRequest("makeCredential", "example.com", "alice", "usb")

    async def ask_and_answer(answer: bytes | None) -> bool:
        _pending.clear()
        task = asyncio.ensure_future(presence.request_presence(req))
        while b"touch?" not in _read_available(master):  # the question reached the terminal
            await asyncio.sleep(0.01)
        if answer is None:
            os.close(master)
        else:
            os.write(master, answer)
        return await asyncio.wait_for(task, 10)

    try:
        assert asyncio.run(ask_and_answer(b"\n")) is True
        assert asyncio.run(ask_and_answer(b"n\n")) is False
        assert asyncio.run(ask_and_answer(None)) is False  # the terminal went away
        assert asyncio.run(presence.request_presence(req)) is False  # and stays denied
    finally:
        presence.close()
        os.close(slave)
        try:
            os.close(master)
        except OSError:
            pass


_pending = bytearray()


def _read_available(fd: int) -> bytes:
    import select

    while select.select([fd], [], [], 0)[0]:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        _pending.extend(chunk)
    return bytes(_pending)


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_run_default_presence_never_approves_without_a_terminal(tmp_path):
    """`fido-emu run` (default presence) under nohup/systemd: stdin at EOF, no terminal.
    A makeCredential over UDP ends OPERATION_DENIED, never OK."""
    from fido2.ctap import CtapError
    from fido2.ctap2 import Ctap2

    from transports.udp import open_udp_device

    port, reply = _free_udp_port(), _free_udp_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "run", "--transport", "udp",
         "--udp-port", str(port), "--udp-reply-port", str(reply), "--store", str(tmp_path / "r.db")],
        stdin=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                dev = open_udp_device(("127.0.0.1", port), ("127.0.0.1", reply), timeout=2.0)
                break
            except Exception:
                assert proc.poll() is None and time.monotonic() < deadline
        ctap = Ctap2(dev)
        with pytest.raises(CtapError) as e:
            ctap.make_credential(
                b"\x01" * 32, {"id": "example.com", "name": "Ex"}, {"id": b"u", "name": "a"},
                [{"type": "public-key", "alg": -7}],
            )
        assert e.value.code in (CtapError.ERR.OPERATION_DENIED, CtapError.ERR.USER_ACTION_TIMEOUT)
        dev.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert "status=OK" not in err.split("makeCredential", 1)[-1].splitlines()[0]
    assert err.count("every touch is denied") == 1


# -- origins ---------------------------------------------------------------------------------
def test_related_origins_and_top_origin_from_the_cli(tmp_path):
    store = tmp_path / "ro.db"
    well_known = tmp_path / "webauthn.json"
    well_known.write_text(json.dumps({"origins": ["https://example.de"]}))
    args = ["webauthn", "create", "--origin", "https://example.de", "--store", str(store)]
    refused = fido_emu(*args, stdin=json.dumps(creation()))
    assert refused.returncode == 1 and "SecurityError" in one_line(refused.stderr)
    assert not store.exists()  # refused before the store was opened
    ok = fido_emu(*args, "--related-origins", str(well_known), "--top-origin", "https://shop.test",
                  stdin=json.dumps(creation()))
    assert ok.returncode == 0, ok.stderr
    client_data = json.loads(unb64(json.loads(ok.stdout)["response"]["clientDataJSON"]))
    assert client_data["origin"] == "https://example.de"
    assert client_data["crossOrigin"] is True and client_data["topOrigin"] == "https://shop.test"
    well_known.write_text("[1, 2]")
    bad = fido_emu(*args, "--related-origins", str(well_known), stdin=json.dumps(creation()))
    assert bad.returncode == 2 and "--related-origins" in one_line(bad.stderr)
    gone = fido_emu(*args, "--related-origins", str(tmp_path / "nope.json"),
                    stdin=json.dumps(creation()))
    assert gone.returncode == 3 and "--related-origins" in one_line(gone.stderr)
