"""UDP-HID: ``fido-emu run --transport udp`` in its own process, driven by raw CTAPHID
clients (64-byte reports built here, no python-fido2 on the client side).

* round trip: one client process, sequential getAssertions (allowList), median and p99;
* throughput: 1 and 4 client processes for a fixed time against ``--instances 2
  --workers 2`` (two authenticators in two server processes; clients spread over them).

``python tools/bench/udp_rtt.py --client PORT SECONDS START`` is the client process.
"""

from __future__ import annotations

import os
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import cbor2

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).parent))

from measure import CDH, Result  # noqa: E402

TIMEOUT = 2.0  # seconds without an answer before a request counts as lost
BROADCAST = 0xFFFFFFFF
INIT, CBOR, KEEPALIVE, ERROR = 0x06, 0x10, 0x3B, 0x3F


class RawCtapHid:
    """A minimal CTAPHID-over-UDP client: INIT for a channel, then CBOR messages."""

    def __init__(self, port: int, timeout: float = 2.0) -> None:
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.connect(("127.0.0.1", port))
        self.sock.settimeout(timeout)
        nonce = os.urandom(8)
        self._send(BROADCAST, INIT, nonce)
        while True:
            data = self._recv(BROADCAST)
            if data[:8] == nonce:
                break
        self.cid = int.from_bytes(data[8:12], "big")

    def _send(self, cid: int, cmd: int, data: bytes) -> None:
        send = self.sock.send
        send(struct.pack(">IBH", cid, 0x80 | cmd, len(data)) + data[:57].ljust(57, b"\0"))
        rest, seq = data[57:], 0
        while rest:
            send(struct.pack(">IB", cid, seq) + rest[:59].ljust(59, b"\0"))
            rest, seq = rest[59:], seq + 1

    def _recv(self, cid: int) -> bytes:
        recv = self.sock.recv
        while True:
            packet = recv(64)
            rcid, kind = struct.unpack_from(">IB", packet)
            if rcid != cid or not kind & 0x80 or kind == 0x80 | KEEPALIVE:
                continue
            size = int.from_bytes(packet[5:7], "big")
            data = packet[7 : 7 + size]
            while len(data) < size:
                packet = recv(64)
                data += packet[5 : 5 + size - len(data)]
            if kind == 0x80 | ERROR:
                raise RuntimeError(f"CTAPHID error 0x{data[0]:02X}")
            return data

    def cbor(self, request: bytes) -> bytes:
        self._send(self.cid, CBOR, request)
        return self._recv(self.cid)

    def close(self) -> None:
        self.sock.close()


def connect(port: int, timeout: float = TIMEOUT) -> RawCtapHid:
    """A client with its channel; a few tries (a loaded machine may be slow to answer)."""
    for attempt in range(10):
        try:
            return RawCtapHid(port, timeout=timeout)
        except OSError:
            if attempt == 9:
                raise
            time.sleep(0.5)
    raise AssertionError("unreachable")


def make_credential(client: RawCtapHid) -> bytes:
    req = {1: CDH, 2: {"id": "bench.example"}, 3: {"id": os.urandom(8)},
           4: [{"type": "public-key", "alg": -7}]}
    response = client.cbor(b"\x01" + cbor2.dumps(req, canonical=True))
    assert response[0] == 0, f"makeCredential: 0x{response[0]:02X}"
    auth_data = cbor2.loads(response[1:])[2]
    n = int.from_bytes(auth_data[53:55], "big")
    return auth_data[55 : 55 + n]


def ga_request(cred_id: bytes) -> bytes:
    req = {1: "bench.example", 2: CDH, 3: [{"type": "public-key", "id": cred_id}]}
    return b"\x02" + cbor2.dumps(req, canonical=True)


def _free_ports(k: int) -> int:
    """A base port with k free consecutive UDP ports after it."""
    for _ in range(50):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
        s.close()
        if base + k > 65535:
            continue
        try:
            socks = []
            for i in range(k):
                t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()
    raise RuntimeError("no free UDP ports")


class Server:
    """``fido-emu run --transport udp`` as a subprocess, ready when it answers INIT."""

    def __init__(self, tmp: Path, instances: int = 1, workers: int = 1) -> None:
        self.port = _free_ports(instances)
        args = [sys.executable, "-m", "authenticator.frontdoor.cli", "run", "--transport", "udp",
                "--udp-port", str(self.port), "--store", str(tmp / "udp.db"), "--presence", "auto"]
        if instances > 1:
            args += ["--instances", str(instances)]
        if workers > 1:
            args += ["--workers", str(workers)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.log = tmp / "server.log"  # its per-command log lines: a file, never a full pipe
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, cwd=REPO, stdout=log, stderr=log)
        deadline = time.monotonic() + 60
        for i in range(instances):
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"fido-emu run exited: {self.log.read_text()[-500:]}")
                try:
                    RawCtapHid(self.port + i, timeout=0.2).close()
                    break
                except (TimeoutError, OSError):
                    if time.monotonic() > deadline:
                        raise
        self.instances = instances

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def client_main(port: int, seconds: float, start: float) -> None:
    """One client process: getAssertions from ``start`` for ``seconds``; prints the count."""
    client = connect(port)
    request = ga_request(make_credential(client))
    while time.time() < start:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    done = lost = 0
    while time.perf_counter() < end:
        try:
            response = client.cbor(request)
        except TimeoutError:
            lost += 1
            client.close()
            client = connect(port)
            continue
        assert response[0] == 0, f"getAssertion: 0x{response[0]:02X}"
        done += 1
    print(done, lost, flush=True)


def _throughput(server: Server, clients: int, seconds: float) -> float:
    """Assertions per second of ``clients`` processes spread over the server's instances."""
    start = time.time() + 3.0  # every client has its channel and credential by then
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen([sys.executable, __file__, "--client",
                          str(server.port + i % server.instances), str(seconds), str(start)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        for i in range(clients)
    ]
    total = 0
    for p in procs:
        out, err = p.communicate(timeout=seconds + 60)
        if p.returncode != 0:
            raise RuntimeError(f"a UDP client failed: {err.strip().splitlines()[-1:]}")
        done, lost = (int(x) for x in out.split()[-2:])
        total += done
        LOST[0] += lost
    return total / seconds


LOST = [0]  # requests the throughput clients saw go unanswered


def run(tmp: Path, n: int, rounds: int) -> list[Result]:
    results: list[Result] = []
    group = "UDP-HID, server in its own process (raw CTAPHID client)"
    server = Server(tmp)
    try:
        client = connect(server.port)
        request = ga_request(make_credential(client))
        for _ in range(max(20, n // 10)):
            client.cbor(request)
        us: list[float] = []
        p99s: list[float] = []
        lost = 0
        for _ in range(rounds):
            samples = []
            while len(samples) < n:
                t = time.perf_counter()
                try:
                    client.cbor(request)
                except TimeoutError:  # no answer within the client's timeout: count it, go on
                    lost += 1
                    client.close()
                    client = connect(server.port)
                    continue
                samples.append((time.perf_counter() - t) * 1e6)
            us.append(statistics.median(samples))
            p99s.append(statistics.quantiles(samples, n=100)[98])
        client.close()
    finally:
        server.close()
    note = f"p99 {statistics.median(p99s) / 1000:.2f} ms"
    if lost:
        note += f"; {lost} of {rounds * n + lost} requests got no answer within {TIMEOUT:g} s"
    r = Result("getAssertion round trip, 1 client", us, [], "ms", 0.5, note=note, group=group)
    results.append(r)
    print(f"  {r.name}: median {r.median_us:.0f} µs, {r.note}", flush=True)

    (tmp / "w").mkdir(parents=True, exist_ok=True)
    server = Server(tmp / "w", instances=2, workers=2)
    try:
        one, four = [], []
        for _ in range(max(2, rounds // 2)):
            one.append(_throughput(server, 1, 2.0))
            four.append(_throughput(server, 4, 2.0))
    finally:
        server.close()
    lost = f"; {LOST[0]} requests unanswered within {TIMEOUT:g} s" if LOST[0] else ""
    us1 = [1e6 / t for t in one]
    us4 = [1e6 / t for t in four]
    results.append(Result("1 client process, --instances 2 --workers 2", us1, [], "",
                          note=f"{statistics.median(one):,.0f} assertions/s", group=group))
    results.append(Result(
        "4 client processes, --instances 2 --workers 2", us4,
        [a / b for a, b in zip(us4, us1, strict=True)], "1 client", 1 / 1.6,
        note=f"{statistics.median(four):,.0f} assertions/s; time per assertion, so ≤ 0.625x "
             f"is ≥ 1.6x the throughput{lost}", group=group))
    for r in results[-2:]:
        print(f"  {r.name}: {r.note}", flush=True)
    return results


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--client":
        client_main(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit("usage: udp_rtt.py --client PORT SECONDS START (run by tools/bench/run.py)")
