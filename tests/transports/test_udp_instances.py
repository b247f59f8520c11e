"""`fido-emu run --transport udp --instances N --workers K`: several test processes, one emulator.

Two client processes share instance 0 (each datagram answered to its sender, channels per
address, commands queued on the authenticator's lock); instance 1 is a separate authenticator
(own store, own device key) served by a second worker process.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLIENT = textwrap.dedent(
    """
    import json, os, sys, time
    from fido2.ctap import CtapError
    from fido2.ctap2 import Ctap2
    from transports.udp import open_udp_device

    def connect(port):
        end = time.monotonic() + 60
        while True:
            try:
                return open_udp_device(("127.0.0.1", port), ("127.0.0.1", 0), timeout=2.0)
            except Exception:
                if time.monotonic() > end:
                    raise
                time.sleep(0.1)  # polling for the server to come up, bounded by the deadline

    port, other_port, rounds = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    ctap = Ctap2(connect(port))
    cids = []
    for i in range(rounds):
        made = ctap.make_credential(
            os.urandom(32), {"id": "example.com", "name": "Ex"},
            {"id": os.urandom(8), "name": f"u{i}"}, [{"type": "public-key", "alg": -7}],
        )
        cred = made.auth_data.credential_data
        cdh = os.urandom(32)
        got = ctap.get_assertion(
            "example.com", cdh, [{"type": "public-key", "id": cred.credential_id}]
        )
        got.verify(cdh, cred.public_key)
        cids.append(cred.credential_id.hex())
    other = Ctap2(connect(other_port))
    try:
        other.get_assertion("example.com", os.urandom(32),
                            [{"type": "public-key", "id": bytes.fromhex(cids[0])}])
        foreign = "accepted"
    except CtapError as e:
        foreign = e.code.name
    print(json.dumps({"pid": os.getpid(), "credentials": cids, "on_other_instance": foreign}))
    """
)


def free_port_pair() -> int:
    """A UDP port P with P+1 free too (instances listen on --udp-port + i)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free UDP port pair")


def cli_module() -> str:
    root = Path(__file__).resolve().parents[2]
    if (root / "authenticator" / "frontdoor" / "cli").is_dir():
        return "authenticator.frontdoor.cli"
    return "authenticator.cli"


@pytest.mark.timeout(300)
def test_two_client_processes_share_instances_over_two_workers(tmp_path: Path) -> None:
    port = free_port_pair()
    server = subprocess.Popen(
        [sys.executable, "-m", cli_module(), "run", "--transport", "udp", "--presence", "auto",
         "--udp-port", str(port), "--instances", "2", "--workers", "2",
         "--store", str(tmp_path / "s.db")],
        stderr=subprocess.PIPE, text=True,
    )
    try:
        clients = [
            subprocess.Popen(
                [sys.executable, "-c", CLIENT, str(port), str(port + 1), "5"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(2)
        ]
        results = []
        for c in clients:
            out, err = c.communicate(timeout=240)
            assert c.returncode == 0, err
            results.append(json.loads(out))
    finally:
        server.send_signal(signal.SIGTERM)
        _, log = server.communicate(timeout=60)
    assert server.returncode == 0, log
    # both processes made and used credentials on the one shared instance 0 ...
    assert all(len(r["credentials"]) == 5 for r in results)
    assert results[0]["pid"] != results[1]["pid"]
    # ... which instance 1 (another authenticator, another process) does not know
    assert [r["on_other_instance"] for r in results] == ["NO_CREDENTIALS"] * 2
    assert (tmp_path / "s-0.db").exists() and (tmp_path / "s-1.db").exists()
    served = [line for line in log.splitlines() if "instance(s) over udp" in line]
    assert sorted(served) == sorted(
        f"fido-emu: serving 1 instance(s) over udp on ports {p}" for p in (port, port + 1)
    )
    assert "Traceback" not in log
    # each worker logs its commands like a single `fido-emu run` does
    assert log.count("getAssertion rp=example.com status=OK") >= 10


def test_instances_refuse_interactive_presence(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", cli_module(), "run", "--transport", "udp", "--instances", "2",
         "--presence", "prompt", "--store", str(tmp_path / "s.db")],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("fido-emu: error: --instances/--workers need --presence")
    assert "Traceback" not in result.stderr
