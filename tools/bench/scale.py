"""Store size: the same operations on stores of 1k, 100k and 1M discoverable credentials.

Stores are seeded through the real API: the credentials the operations touch are made by
makeCredential; the rest are imported with ``CredentialStore.put_credentials`` (one
transaction per 20k batch, the store's own bulk path, so its O(1) count, per-RP summaries and
the ``max_discoverable`` cap stay right). Filler credentials spread over n/100 RPs (10k RPs at
1M). A seeded store is kept in ``BENCH_DIR`` and reused by later runs.

*warm*: one open store and authenticator, rotating over 64 RPs. *cold*: a new store handle
and authenticator for every operation (a fresh SQLite connection and empty caches: what each
CLI call pays, without the interpreter start-up); the OS page cache stays warm.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from hashlib import sha256
from itertools import count
from pathlib import Path

import cbor2
from measure import FLOORS, Result, absolute, interleaved, paired
from paths import credential_id, ga_request, mc_request

from authenticator import Authenticator, Config
from storage.base import CredentialRecord
from storage.sqlite import SqliteStore

WARM_RPS = 64
TARGET_RP = "target.example"
TARGET_USERS = 5
SEED_STATE = "bench.seed"
BATCH = 20_000
# credentialManagement tokens from built-in UV (no PIN); room above a 1M store (the default
# cap is 1M, where resident makeCredential is KEY_STORE_FULL)
CONFIG = {"builtin_uv": True, "max_discoverable": 2_000_000}
REPO = Path(__file__).resolve().parents[2]
FIDO_EMU = [sys.executable, "-m", "authenticator.frontdoor.cli"]


def label(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 and n % 1_000_000 == 0 else f"{n // 1000}k"


def _cose(i: int) -> bytes:
    x = sha256(b"x%d" % i).digest()
    return cbor2.dumps({1: 2, 3: -7, -1: 1, -2: x, -3: sha256(x).digest()})


SEED_TIME_STATE = "bench.seed_seconds"


def seed(path: Path, n: int) -> tuple[float, bool]:
    """A store with exactly n discoverable credentials: (seconds its seeding took, reused)."""
    if path.exists():
        store = SqliteStore(path)
        try:
            if store.get_state(SEED_STATE) == str(n).encode() and (
                n <= store.count_discoverable() <= n + max(100, n // 100)
            ):
                took = store.get_state(SEED_TIME_STATE)
                return (float(took) if took else 0.0), True
        finally:
            store.close()
        for suffix in ("", "-wal", "-shm", ".key", ".lock"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    t = time.perf_counter()
    store = SqliteStore(path)
    # the seeding handle only: a page cache that holds the growing indexes (the handles
    # measured below keep SQLite's default)
    store._db.execute("PRAGMA cache_size=-1000000")  # noqa: SLF001
    from authenticator.frontdoor.cli.common import OVERRIDES_STATE, PROFILE_STATE

    store.set_state(PROFILE_STATE, b"security-key")
    store.set_state(OVERRIDES_STATE, b"builtin_uv=true")
    auth = Authenticator(Config(**CONFIG), store)
    loop = asyncio.new_event_loop()
    real = [(TARGET_RP, b"target-%d" % i) for i in range(TARGET_USERS)]
    real += [(f"ga-rp{i}.example", b"warm-user") for i in range(WARM_RPS)]
    for rp, user in real:
        status = loop.run_until_complete(auth.handle_cbor(mc_request(True, user, rp)))[0]
        assert status == 0, f"seeding makeCredential: 0x{status:02X}"
    filler = n - len(real)
    rps = max(10, n // 100)
    hashes = [sha256(f"rp{i}.example".encode()).digest() for i in range(rps)]
    now = time.time() - filler
    for start in range(0, filler, BATCH):
        records = []
        for i in range(start, min(filler, start + BATCH)):
            r = i % rps
            records.append(
                CredentialRecord(
                    credential_id=b"\x02" + os.urandom(44),  # the size of our stored ids
                    rp_id=f"rp{r}.example",
                    rp_id_hash=hashes[r],
                    user_id=i.to_bytes(8, "big"),
                    user_name=f"user{i}@rp{r}.example",
                    user_display_name=f"User {i}",
                    algorithm=-7,
                    sealed_key=os.urandom(60),  # nonce + sealed 32-byte scalar + tag
                    public_key=_cose(i),
                    created=now + i,
                )
            )
        store.put_credentials(records)
        if (start // BATCH) % 10 == 9:
            print(f"    {start + BATCH:,} of {filler:,} in {time.perf_counter() - t:.0f} s",
                  flush=True)
    assert store.count_discoverable() == n, (store.count_discoverable(), n)
    store.set_state(SEED_STATE, str(n).encode())
    took = time.perf_counter() - t
    store.set_state(SEED_TIME_STATE, f"{took:.1f}".encode())
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # noqa: SLF001 - start from a clean file
    store.close()
    loop.close()
    return took, False


class Sized:
    """One seeded store with a warm authenticator and the operations measured on it."""

    def __init__(self, path: Path, n: int) -> None:
        self.path, self.n = path, n
        self.loop = asyncio.new_event_loop()
        self.auth = Authenticator(Config(**CONFIG), SqliteStore(path))
        self.ga_i = count()
        self.mc_i = count()
        self.tag = os.urandom(4).hex().encode()
        self._cm_request: bytes | None = None

    def close(self) -> None:
        self.auth.store.close()
        self.loop.close()

    def _run(self, auth: Authenticator, request: bytes) -> bytes:
        response = self.loop.run_until_complete(auth.handle_cbor(request))
        assert response[0] == 0, f"CTAP status 0x{response[0]:02X}"
        return response

    def _ga(self) -> bytes:
        return ga_request(f"ga-rp{next(self.ga_i) % WARM_RPS}.example", None)

    def _mc(self) -> bytes:
        i = next(self.mc_i)
        return mc_request(True, self.tag + b"-%d" % i, f"mc-rp{i % WARM_RPS}.example")

    def _cold(self, request: bytes) -> bytes:
        store = SqliteStore(self.path)
        try:
            return self._run(Authenticator(Config(**CONFIG), store), request)
        finally:
            store.close()

    def batch(self, op: str):
        def run(n: int) -> float:
            requests = [self._request(op) for _ in range(n)]
            t = time.perf_counter()
            if op.endswith("cold"):
                responses = [self._cold(request) for request in requests]
            else:
                responses = [self._run(self.auth, request) for request in requests]
            elapsed = time.perf_counter() - t
            if op.startswith("mc"):  # untimed: the store keeps its size from round to round
                for response in responses:
                    self.auth.store.delete_credential(credential_id(response))
            return elapsed

        return run

    def _request(self, op: str) -> bytes:
        if op.startswith("ga"):
            return self._ga()
        if op.startswith("mc"):
            return self._mc()
        assert op == "rps_begin"
        return self.cm_request()

    def cm_request(self) -> bytes:
        """enumerateRPsBegin with a pinUvAuthToken from built-in UV (python-fido2 ClientPin)."""
        if self._cm_request is None:
            from fido2.ctap2 import ClientPin, Ctap2

            from transports.inprocess import InProcessDevice

            dev = InProcessDevice(self.auth)
            cp = ClientPin(Ctap2(dev))
            token = cp.get_uv_token(ClientPin.PERMISSION.CREDENTIAL_MGMT)
            param = cp.protocol.authenticate(token, b"\x02")
            self._cm_request = b"\x0a" + cbor2.dumps(
                {1: 2, 3: cp.protocol.VERSION, 4: param}, canonical=True
            )
        return self._cm_request

    def list_one_rp(self, rp_id: str) -> int:
        """What ``credentials list --rp X`` does after start-up: a token, then
        enumerateCredentials for that RP through python-fido2 (our CLI uses it)."""
        from fido2.ctap2 import ClientPin, CredentialManagement, Ctap2

        from transports.inprocess import InProcessDevice

        dev = InProcessDevice(self.auth)
        ctap = Ctap2(dev)
        cp = ClientPin(ctap)
        token = cp.get_uv_token(ClientPin.PERMISSION.CREDENTIAL_MGMT)
        creds = CredentialManagement(ctap, cp.protocol, token).enumerate_creds(
            sha256(rp_id.encode()).digest()
        )
        return len(creds)


def _cli(args: list[str], stdin: str | None = None) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        FIDO_EMU + args, input=stdin, capture_output=True, text=True, env=env, cwd=REPO
    )
    if out.returncode != 0:
        raise RuntimeError(f"fido-emu {' '.join(args)}: {out.stderr.strip()}")


def _python_pass(n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - t


FLOORS["python -c pass"] = _python_pass


def run(bench_dir: Path, sizes: list[int], n: int, rounds: int) -> list[Result]:
    results: list[Result] = []
    stores: dict[int, Sized] = {}
    for size in sizes:
        path = bench_dir / f"scale-{label(size)}.db"
        print(f"  seeding {label(size)} ...", flush=True)
        spent, reused = seed(path, size)
        note = "store reused; the time of the run that seeded it" if reused else ""
        print(f"  {label(size)}: seeding took {spent:.0f} s{' (reused)' if reused else ''}",
              flush=True)
        results.append(Result(f"seed {label(size)} through put_credentials", [spent * 1e6],
                              vs="", note=note, group="store size: seeding"))
        stores[size] = Sized(path, size)
    base = stores[sizes[0]]
    big = sizes[1:]
    for s in stores.values():  # each warm RP's counter takes its first lease (a durable write)
        s.batch("ga_warm")(WARM_RPS)

    def add(r: Result, group: str) -> None:
        r.group = group
        results.append(r)
        ratio = f", ratio {r.median_ratio:.2f}" if r.ratios else ""
        print(f"  {r.name}: {r.median_us:.0f} µs{ratio}", flush=True)

    ops = [
        ("ga_warm", "discoverable getAssertion, warm", n, 1.2),
        ("ga_cold", "discoverable getAssertion, cold", max(5, n // 20), 1.2),
        ("mc_warm", "resident makeCredential, warm", max(5, n // 20), 1.2),
        ("mc_cold", "resident makeCredential, cold", max(5, n // 40), 1.2),
        ("rps_begin", "credentialManagement enumerateRPsBegin", max(5, n // 10), None),
    ]
    g = f"store size (ratio: the same operation on the {label(sizes[0])} store)"
    for op, name, m, target in ops:
        for size in big:
            r = paired(f"{name} at {label(size)}", base.batch(op), stores[size].batch(op), m,
                       rounds, label(sizes[0]), target=target)
            add(r, g)
    g = "credentialManagement at size (absolute)"
    for size in sizes:
        rps = stores[size].auth.store.count_rps()
        add(absolute(f"enumerateRPsBegin, {rps:,} RPs / {label(size)} credentials",
                     stores[size].batch("rps_begin"), max(5, n // 10), rounds,
                     target_ms=20.0 if size == sizes[-1] else None), g)
        s = stores[size]
        per_rp = s.list_one_rp("rp0.example")

        def listing(k: int, s: Sized = s) -> float:
            t = time.perf_counter()
            for _ in range(k):
                s.list_one_rp("rp0.example")
            return time.perf_counter() - t

        add(absolute(f"list one RP's {per_rp} credentials (token + enumerateCredentials via "
                     f"python-fido2), {label(size)} store", listing, 3, rounds,
                     target_ms=50.0), g)

    g = "CLI per call (fido-emu as a subprocess; ratio vs `python -c pass` or the small store)"
    options = json.dumps({"challenge": "AAAAAAAAAAAAAAAAAAAAAA", "rpId": TARGET_RP})

    def cli_get(path: str):
        def run(k: int) -> float:
            t = time.perf_counter()
            for _ in range(k):
                _cli(["webauthn", "get", "--origin", f"https://{TARGET_RP}", "--store", path],
                     options)
            return time.perf_counter() - t

        return run

    def cli_list(path: str):
        def run(k: int) -> float:
            t = time.perf_counter()
            for _ in range(k):
                _cli(["credentials", "list", "--rp", "rp0.example", "--store", path, "--json"])
            return time.perf_counter() - t

        return run

    small = str(base.path)
    r_cli = max(3, rounds // 2)  # a call costs hundreds of ms: fewer rounds of 2 calls
    add(interleaved(f"webauthn get, {label(sizes[0])} store", cli_get(small), 2, r_cli,
                    "python -c pass", floor_n=2), g)
    for size in big:
        add(paired(f"webauthn get, {label(size)} store", cli_get(small),
                   cli_get(str(stores[size].path)), 2, r_cli, label(sizes[0]), target=1.2), g)
    add(interleaved(f"credentials list --rp (one RP), {label(sizes[0])} store", cli_list(small),
                    2, r_cli, "python -c pass", floor_n=2), g)
    for size in big:
        add(paired(f"credentials list --rp (one RP), {label(size)} store", cli_list(small),
                   cli_list(str(stores[size].path)), 2, r_cli, label(sizes[0])), g)
    for s in stores.values():
        s.close()
    return results
