"""What one `fido-emu` call costs: `webauthn get` on a 1k-credential store vs `python -c pass`.

RP test suites call the CLI in loops, so its start-up is the price of every ceremony. The
target (issue 11) is at most ~6x a bare interpreter start. Both are run with the same
interpreter (the venv's, so both pay the same site-packages start-up), alternating, and the
median of N runs of each is compared.

Usage: python tools/bench/cli_cost.py [--runs N] [--credentials N] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def make_store(path: Path, credentials: int) -> None:
    """A store with ``credentials`` discoverable credentials over 100 RPs, made through the
    core (makeCredential), plus one for the RP the benchmark signs in to."""
    import cbor2

    from authenticator import Authenticator, Config
    from storage.sqlite import SqliteStore

    store = SqliteStore(path)
    store.set_state("cli.profile", b"security-key")
    auth = Authenticator(Config.for_profile("security-key"), store)
    cdh = sha256(b"bench").digest()

    async def fill() -> None:
        for i in range(credentials):
            rp = "bench.example" if i == 0 else f"rp{i % 100}.example"
            req = {1: cdh, 2: {"id": rp}, 3: {"id": i.to_bytes(4, "big"), "name": f"u{i}"},
                   4: [{"type": "public-key", "alg": -7}], 7: {"rk": True}}
            out = await auth.handle_cbor(b"\x01" + cbor2.dumps(req))
            assert out[0] == 0, out[0]

    asyncio.run(fill())
    auth.counters.release()
    store.close()


def timed(argv: list[str], stdin: bytes, env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds user+system) of one run. CPU time is the steadier figure
    on a shared machine; wall time is what a caller waits."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(argv, input=stdin, capture_output=True, env=env)
    elapsed = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{argv[2:]} failed: {proc.stderr.decode(errors='replace')}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--credentials", type=int, default=1000)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    # as users run it: bytecode caches written and used (a development shell may disable them)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)
    options = json.dumps({"challenge": "AAAAAAAAAAAAAAAAAAAAAA", "rpId": "bench.example"}).encode()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "bench.db"
        make_store(store, args.credentials)
        cli = [sys.executable, "-m", "authenticator.frontdoor.cli", "webauthn", "get",
               "--origin", "https://bench.example", "--store", str(store)]
        bare = [sys.executable, "-c", "pass"]
        timed(cli, options, env)  # write the bytecode caches, warm the page cache
        timed(cli, options, env)
        cli_s, bare_s = [], []
        for _ in range(args.runs):
            bare_s.append(timed(bare, b"", env))
            cli_s.append(timed(cli, options, env))

    def med(samples: list[tuple[float, float]], i: int) -> float:
        return statistics.median(s[i] for s in samples)

    result = {
        "credentials": args.credentials,
        "runs": args.runs,
        "python_c_pass_wall_ms": round(med(bare_s, 0) * 1000, 1),
        "python_c_pass_cpu_ms": round(med(bare_s, 1) * 1000, 1),
        "webauthn_get_wall_ms": round(med(cli_s, 0) * 1000, 1),
        "webauthn_get_cpu_ms": round(med(cli_s, 1) * 1000, 1),
        "ratio_wall": round(med(cli_s, 0) / med(bare_s, 0), 2),
        "ratio_cpu": round(med(cli_s, 1) / med(bare_s, 1), 2),
    }
    print(f"medians of {args.runs} runs, alternating; {args.credentials} credentials in the store")
    print(f"{'':26}{'wall':>10}{'cpu':>10}")
    print(f"{'python -c pass':26}{result['python_c_pass_wall_ms']:8.1f}ms"
          f"{result['python_c_pass_cpu_ms']:8.1f}ms")
    print(f"{'fido-emu webauthn get':26}{result['webauthn_get_wall_ms']:8.1f}ms"
          f"{result['webauthn_get_cpu_ms']:8.1f}ms")
    print(f"{'ratio (target <= ~6x)':26}{result['ratio_wall']:9.2f}x{result['ratio_cpu']:9.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
