"""Store operations at scale: count, enumeration begin, one RP's credentials, a new
resident credential — at N credentials over R RPs, seeded through the store's bulk path.

Not a test (no timed assertions); prints milliseconds, median of 5, cold (a new handle per
sample, as a CLI call starts) and warm. ``--tree DIR`` measures ``storage`` from another
checkout (e.g. an export of an older commit; seeding always uses this tree) to compare before and after on one machine.

Usage: python tools/bench/store_scale.py [--n 100000] [--rps 10000] [--tree DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from hashlib import sha256
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rps", type=int, default=10_000)
    ap.add_argument("--tree", default=str(Path(__file__).resolve().parents[2]))
    args = ap.parse_args()
    here = str(Path(__file__).resolve().parents[2])

    tmp = Path(tempfile.mkdtemp(prefix="store-scale-"))
    path = tmp / "scale.db"
    _seed(here, path, args.n, args.rps)  # always through this tree's bulk path
    for name in list(sys.modules):
        if name == "storage" or name.startswith("storage."):
            del sys.modules[name]
    sys.path.insert(0, args.tree)
    from storage.sqlite import SqliteStore

    big = sha256(b"rp0.example").digest()
    paged = hasattr(SqliteStore, "list_rps_page")

    def cold(fn) -> float:
        samples = []
        for _ in range(5):
            store = SqliteStore(path)
            t = time.perf_counter()
            fn(store)
            samples.append((time.perf_counter() - t) * 1000)
            store.close()
        return statistics.median(samples)

    def warm(fn) -> float:
        store = SqliteStore(path)
        fn(store)
        samples = []
        for _ in range(5):
            store._invalidate()  # what any write (own or another process's) does
            t = time.perf_counter()
            fn(store)
            samples.append((time.perf_counter() - t) * 1000)
        store.close()
        return statistics.median(samples)

    def count(s):
        return s.count_discoverable()

    def rps_begin(s):
        if paged:
            return s.list_rps_page(None, 1), s.count_rps()
        rps = s.list_rps()
        return rps[:1], len(rps)

    def creds_begin(s):
        if paged:
            return s.credentials_for_rp_page(big, None, 1), s.rp_summary(big)
        return s.credentials_for_rp(big)

    def all_rps(s):
        if paged:
            out, after = [], None
            while page := s.list_rps_page(after, 256):
                out += page
                after = page[-1]
            return out
        return s.list_rps()

    print(f"storage from {args.tree}; {args.n} credentials over {args.rps} RPs "
          f"({args.n // args.rps} each, rp0 has {args.n // args.rps}); paged={paged}")
    for label, fn in [
        ("count_discoverable", count),
        ("enumerateRPs begin (first RP + total)", rps_begin),
        ("enumerateCredentials begin (one RP)", creds_begin),
        ("list every RP", all_rps),
    ]:
        print(f"  {label:42s} cold {cold(fn):9.3f} ms   warm {warm(fn):9.3f} ms")
    from storage.base import CredentialRecord

    store = SqliteStore(path)
    samples = []
    for i in range(20):
        rec = CredentialRecord(
            credential_id=os.urandom(32), rp_id="new.example",
            rp_id_hash=sha256(b"new.example").digest(), user_id=b"n%d" % i, algorithm=-7,
            sealed_key=os.urandom(60), public_key=b"", created=time.time(),
        )
        t = time.perf_counter()
        store.put_credential(rec)
        store.count_discoverable()  # what the next makeCredential's capacity check reads
        samples.append((time.perf_counter() - t) * 1000)
    print(f"  {'put_credential + count (next MC)':42s} median {statistics.median(samples):.3f} ms")
    store.close()


def _seed(tree: str, path: Path, n: int, rps: int) -> None:
    sys.path.insert(0, tree)
    from storage.base import CredentialRecord
    from storage.sqlite import SqliteStore

    store = SqliteStore(path)
    batch = []
    for i in range(n):
        rp = f"rp{i % rps}.example"
        batch.append(CredentialRecord(
            credential_id=os.urandom(32), rp_id=rp, rp_id_hash=sha256(rp.encode()).digest(),
            user_id=b"user%d" % i, algorithm=-7, sealed_key=os.urandom(60), public_key=b"",
            rp_name=rp, user_name=f"user{i}", created=float(i),
        ))
        if len(batch) == 5000 or i == n - 1:
            store.put_credentials(batch)  # the real bulk path: counts kept by triggers
            batch = []
    store.close()
    sys.path.remove(tree)


if __name__ == "__main__":
    main()
