"""fido-emulator benchmarks: prints the ratios the README quotes.

Targets (DESIGN.md): in-process getAssertion <= 1.5x a bare P-256 sign and makeCredential
<= 2x keygen+sign, with the durable SQLite store; 100k resident credentials over 10k RPs
cost <= 1.2x a 10-credential store; UDP-HID getAssertion round trip <= 1 ms median.
Timer figures on a real event loop (the tests check timers on fake time only): KEEPALIVE
every 100 ms, CTAPHID message timeout inside the spec's 0.5 .. 1 s.

Usage: python tools/bench/run.py [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import cbor2  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from authenticator import Authenticator, Config  # noqa: E402
from storage.base import CredentialRecord  # noqa: E402
from storage.sqlite import SqliteStore  # noqa: E402

CDH = sha256(b"bench").digest()
ES256 = [{"type": "public-key", "alg": -7}]


def per_op(fn, n: int) -> float:
    """Median of 5 batches, in microseconds per operation."""
    batches = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        batches.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(batches)


def aper_op(loop, coro_fn, n: int) -> float:
    async def batch():
        t = time.perf_counter()
        for _ in range(n):
            await coro_fn()
        return (time.perf_counter() - t) / n * 1e6

    return statistics.median(loop.run_until_complete(batch()) for _ in range(5))


def mc_request(rk: bool, user: bytes = b"bench-user", rp: str = "bench.example") -> bytes:
    req = {1: CDH, 2: {"id": rp}, 3: {"id": user, "name": "b"}, 4: ES256, 7: {"rk": rk}}
    return b"\x01" + cbor2.dumps(req, canonical=True)


def ga_request(rp: str, cred_id: bytes | None) -> bytes:
    req: dict = {1: rp, 2: CDH}
    if cred_id is not None:
        req[3] = [{"type": "public-key", "id": cred_id}]
    return b"\x02" + cbor2.dumps(req, canonical=True)


def make_cred(loop, auth: Authenticator, rk: bool, rp: str, user: bytes = b"u") -> bytes:
    raw = loop.run_until_complete(auth.handle_cbor(mc_request(rk, user, rp)))
    assert raw[0] == 0, raw
    auth_data = cbor2.loads(raw[1:])[2]
    n = int.from_bytes(auth_data[53:55], "big")
    return auth_data[55 : 55 + n]


def fill(store: SqliteStore, n: int, rps: int) -> None:
    """n resident credentials spread over `rps` RPs, inserted in one transaction."""
    db = store._db
    rows = []
    now = time.time()
    for i in range(n):
        rp = f"rp{i % rps}.example"
        rec = CredentialRecord(
            credential_id=b"\x02" + os.urandom(45),
            rp_id=rp,
            rp_id_hash=sha256(rp.encode()).digest(),
            user_id=i.to_bytes(8, "big"),
            algorithm=-7,
            sealed_key=os.urandom(60),
            public_key=b"\xa0",
            created=now - n + i,
        )
        rows.append(
            (rec.credential_id, rec.rp_id, rec.rp_id_hash, None, rec.user_id, "u", "U", -7,
             rec.sealed_key, rec.public_key, 1, 1, 0, 0, 0, 0, None, rec.created, "{}")
        )
    db.execute("BEGIN")
    db.executemany(f"INSERT INTO credentials VALUES ({','.join('?' * 19)})", rows)
    db.execute("COMMIT")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer iterations, 10k credentials")
    ap.add_argument("--json", help="also write results as JSON")
    args = ap.parse_args()
    n = 200 if args.quick else 1000
    big = 10_000 if args.quick else 100_000
    loop = asyncio.new_event_loop()
    results: dict[str, float | str] = {}
    tmp = Path(tempfile.mkdtemp(prefix="fido-bench-", dir=os.environ.get("BENCH_DIR", ".")))

    key = ec.generate_private_key(ec.SECP256R1())
    sign = per_op(lambda: key.sign(CDH, ec.ECDSA(hashes.SHA256())), n)
    keygen_sign = per_op(
        lambda: ec.generate_private_key(ec.SECP256R1()).sign(CDH, ec.ECDSA(hashes.SHA256())), n
    )
    results["p256_sign_us"] = sign
    results["p256_keygen_sign_us"] = keygen_sign

    auth = Authenticator(Config(), SqliteStore(tmp / "bench.db"))
    rk_id = make_cred(loop, auth, True, "bench.example")
    nr_id = make_cred(loop, auth, False, "bench.example")
    ga_rk = ga_request("bench.example", rk_id)
    ga_nr = ga_request("bench.example", nr_id)
    ga_disc = ga_request("bench.example", None)
    results["ga_allowlist_resident_us"] = aper_op(loop, lambda: auth.handle_cbor(ga_rk), n)
    results["ga_allowlist_nonresident_us"] = aper_op(loop, lambda: auth.handle_cbor(ga_nr), n)
    results["ga_discoverable_us"] = aper_op(loop, lambda: auth.handle_cbor(ga_disc), n)
    mc_nr = mc_request(False)
    results["mc_nonresident_us"] = aper_op(loop, lambda: auth.handle_cbor(mc_nr), n)
    counter = iter(range(10**9))
    results["mc_resident_us"] = aper_op(
        loop, lambda: auth.handle_cbor(mc_request(True, next(counter).to_bytes(8, "big"))), n // 4
    )
    auth.store.close()

    # 10 vs 100k resident credentials (over 10k RPs): discoverable getAssertion latency,
    # measured in alternating batches so machine noise hits both sides alike
    auths = {}
    for label, count in (("small", 10), ("big", big)):
        store = SqliteStore(tmp / f"{label}.db")
        fill(store, count - 1, max(1, count // 10))
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        a = Authenticator(Config(), store)
        make_cred(loop, a, True, "target.example")
        auths[label] = a
    req = ga_request("target.example", None)
    samples: dict[str, list[float]] = {"small": [], "big": []}
    for _ in range(7):
        for label, a in auths.items():
            samples[label].append(aper_op(loop, lambda a=a: a.handle_cbor(req), n // 5))
    lat = {label: statistics.median(v) for label, v in samples.items()}
    for a in auths.values():
        a.store.close()
    results["ga_10_creds_us"] = lat["small"]
    results[f"ga_{big}_creds_us"] = lat["big"]

    sys.path.insert(0, str(Path(__file__).parent))
    from udp_rtt import udp_round_trip

    results["udp_ga_rtt_median_us"] = udp_round_trip(n=300 if args.quick else 1000)
    from timers import timer_figures

    results.update(timer_figures(beats=10 if args.quick else 30))

    ratios = {
        "getAssertion / P-256 sign (target <= 1.5)": results["ga_allowlist_resident_us"] / sign,
        "getAssertion non-resident / P-256 sign": results["ga_allowlist_nonresident_us"] / sign,
        "makeCredential / (keygen+sign) (target <= 2.0)": results["mc_nonresident_us"] / keygen_sign,
        "makeCredential resident / (keygen+sign)": results["mc_resident_us"] / keygen_sign,
        f"{big} vs 10 resident creds (target <= 1.2)": lat["big"] / lat["small"],
    }
    print(f"fido-emulator bench — {platform.node()} {platform.machine()} "
          f"Python {platform.python_version()} {time.strftime('%Y-%m-%d')}")
    for k, v in results.items():
        unit = "ms" if k.endswith("_ms") else "us"
        print(f"  {k:34s} {v:10.1f} {unit}" if isinstance(v, float) else f"  {k}: {v}")
    print("Ratios:")
    for k, v in ratios.items():
        print(f"  {k:48s} {v:6.2f}x")
    if "udp_ga_rtt_median_us" in results:
        print(f"  UDP-HID getAssertion median RTT (target <= 1 ms) {results['udp_ga_rtt_median_us'] / 1000:6.3f} ms")
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    for p in tmp.iterdir():
        p.unlink()
    tmp.rmdir()


if __name__ == "__main__":
    main()
