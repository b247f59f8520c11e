"""UDP-HID getAssertion round trip through python-fido2, median over n calls (microseconds)."""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import threading
import time
from hashlib import sha256
from pathlib import Path

from fido2.ctap2 import Ctap2

from authenticator import Authenticator, Config
from storage.sqlite import SqliteStore
from transports.udp import UdpTransport, open_udp_device


def udp_round_trip(n: int = 1000) -> float:
    tmp = Path(tempfile.mkdtemp(prefix="fido-bench-udp-"))
    auth = Authenticator(Config(), SqliteStore(tmp / "udp.db"))
    loop = asyncio.new_event_loop()
    transport = UdpTransport(auth, listen=("127.0.0.1", 0), reply_to=None)
    loop.run_until_complete(transport.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        device = open_udp_device(transport.address, ("127.0.0.1", 0))
        ctap = Ctap2(device)
        cdh = sha256(b"udp").digest()
        att = ctap.make_credential(
            cdh, {"id": "bench.example"}, {"id": b"u", "name": "u"}, [{"type": "public-key", "alg": -7}]
        )
        allow = [{"type": "public-key", "id": att.auth_data.credential_data.credential_id}]
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            ctap.get_assertion("bench.example", cdh, allow)
            samples.append((time.perf_counter() - t) * 1e6)
        device.close()
        return statistics.median(samples)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        auth.store.close()
