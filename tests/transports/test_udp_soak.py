"""Bounded fuzz/soak of `fido-emu run --transport udp` (issue 13): hostile CTAPHID reports from
several local ports, interleaved with real python-fido2 ceremonies from another port.

Asserts: the server stays alive, the legitimate client's makeCredential/getAssertion keep
working on its one channel, RSS grows less than a stated bound, no traceback in the log.
Batches are acknowledged by a round trip so the kernel's socket buffer never drops the
legitimate client's datagrams (that would test the kernel, not us).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fido2.ctap2 import Ctap2

from transports.udp import SOLO_MAGIC_REBOOT, open_udp_device

REPORTS = 12_000
BATCH = 40
RSS_BOUND_KB = 8_000  # peer table, channel tables and logs are all bounded (measured: ~0.1 MB)


def _cli_module() -> str:
    root = Path(__file__).resolve().parents[2]
    if (root / "authenticator" / "frontdoor" / "cli").is_dir():
        return "authenticator.frontdoor.cli"
    return "authenticator.cli"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _hostile_report(rng: random.Random, cids: list[int]) -> bytes:
    kind = rng.randrange(8)
    cid = rng.choice(cids + [0xFFFFFFFF, 0, rng.getrandbits(32)])
    if kind == 0:  # broadcast INIT flood
        return struct.pack(">IBH", 0xFFFFFFFF, 0x86, 8) + rng.randbytes(8)
    if kind == 1:  # init packet, any command, any declared length
        return struct.pack(">IBH", cid, 0x80 | rng.randrange(128), rng.randrange(8000)) + \
            rng.randbytes(57)
    if kind == 2:  # continuation packet
        return struct.pack(">IB", cid, rng.randrange(128)) + rng.randbytes(59)
    if kind == 3:  # CBOR command with random CBOR-ish payload
        body = bytes([rng.choice([1, 2, 4, 6, 7, 8, 9, 10, 11, 12, 0x41])]) + rng.randbytes(40)
        return struct.pack(">IBH", cid, 0x90, len(body)) + body
    if kind == 4:  # short and long datagrams
        return rng.randbytes(rng.choice([0, 1, 4, 5, 63, 65, 200]))
    if kind == 5:  # the reboot report (ignored without --allow-reboot-report)
        return SOLO_MAGIC_REBOOT
    if kind == 6:  # LOCK attempts
        return struct.pack(">IBHB", cid, 0x84, 1, rng.randrange(20))
    return rng.randbytes(64)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_udp_soak_with_hostile_peers(tmp_path: Path) -> None:
    port = _free_port()
    log_path = tmp_path / "server.log"  # a file, not a pipe: a full pipe would stall the server
    log_file = log_path.open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", _cli_module(), "run", "--transport", "udp", "--presence", "auto",
         "--udp-port", str(port), "--store", str(tmp_path / "s.db")],
        stderr=log_file, text=True,
    )
    rng = random.Random(20261203)
    hostile = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                dev = open_udp_device(("127.0.0.1", port), ("127.0.0.1", 0), timeout=5.0)
                break
            except Exception:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "server did not come up"
                time.sleep(0.1)  # polling for start-up, bounded by the deadline
        ctap = Ctap2(dev)
        cids: list[int] = []
        for s in hostile:
            s.bind(("127.0.0.1", 0))
            s.settimeout(5.0)
            nonce = os.urandom(8)
            s.sendto(struct.pack(">IBH", 0xFFFFFFFF, 0x86, 8) + nonce, ("127.0.0.1", port))
            while (answer := s.recv(64))[7:15] != nonce:
                pass
            cids.append(int.from_bytes(answer[15:19], "big"))
        cids.append(dev._channel_id)  # aim at the legitimate client's channel too

        def ceremony() -> None:
            cdh = os.urandom(32)
            made = ctap.make_credential(
                cdh, {"id": "example.com", "name": "Ex"}, {"id": os.urandom(4), "name": "u"},
                [{"type": "public-key", "alg": -7}],
            )
            cred = made.auth_data.credential_data
            cdh = os.urandom(32)
            ctap.get_assertion(
                "example.com", cdh, [{"type": "public-key", "id": cred.credential_id}]
            ).verify(cdh, cred.public_key)

        ceremony()
        rss_start = _rss_kb(server.pid)
        for done in range(0, REPORTS, BATCH):
            sender = hostile[(done // BATCH) % len(hostile)]
            for _ in range(BATCH):
                sender.sendto(_hostile_report(rng, cids), ("127.0.0.1", port))
            # acknowledge the batch: a PING on a CID nobody holds is adopted and echoed
            mark = os.urandom(8)
            probe_cid = rng.getrandbits(31) | 1
            sender.sendto(struct.pack(">IBH", probe_cid, 0x81, 8) + mark, ("127.0.0.1", port))
            while True:
                data = sender.recv(64)
                if data[7:15] == mark or (data[:4] == probe_cid.to_bytes(4, "big")
                                          and data[4] == 0xBF):
                    break
            if done % (BATCH * 50) == 0:
                ceremony()
        ceremony()
        assert server.poll() is None
        growth = _rss_kb(server.pid) - rss_start
        assert growth < RSS_BOUND_KB, f"RSS grew by {growth} kB"
        print(f"RSS growth over {REPORTS} hostile reports: {growth} kB")
        dev.close()
    finally:
        for s in hostile:
            s.close()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
        log_file.close()
    log = log_path.read_text()
    assert server.returncode == 0, log[-4000:]
    assert "Traceback" not in log, log[-4000:]
