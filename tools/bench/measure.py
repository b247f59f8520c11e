"""Timing with the floors measured beside every case.

A ratio is only as good as its floor: on a shared machine a P-256 signature costs 25 µs in
one second and 60 µs in the next. So every round of every case is cut into slices, each a
floor batch, a case batch and a floor batch, and the ratio is taken per round over the same
stretch of time. A result
keeps every round: the table shows the median time and the min–median–max of the ratios.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from hashlib import sha256

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

CDH = sha256(b"fido-emu bench").digest()
_KEY = ec.generate_private_key(ec.SECP256R1())
_ECDSA = ec.ECDSA(hashes.SHA256())

Batch = Callable[[int], float]
"""``run(n)`` performs n operations and returns the seconds they took."""


def sign_batch(n: int) -> float:
    """Floor: a bare P-256 ECDSA signature (cryptography/OpenSSL), the work of an assertion."""
    key, alg, data = _KEY, _ECDSA, CDH
    t = time.perf_counter()
    for _ in range(n):
        key.sign(data, alg)
    return time.perf_counter() - t


def keygen_sign_batch(n: int) -> float:
    """Floor: a new P-256 key and one signature, the work of a registration."""
    gen, curve, alg, data = ec.generate_private_key, ec.SECP256R1, _ECDSA, CDH
    t = time.perf_counter()
    for _ in range(n):
        gen(curve()).sign(data, alg)
    return time.perf_counter() - t


FLOORS: dict[str, Batch] = {"sign": sign_batch, "keygen+sign": keygen_sign_batch}


@dataclass
class Result:
    """One row of the table."""

    name: str
    us: list[float]  # per round: microseconds per operation
    ratios: list[float] = field(default_factory=list)  # per round: case / floor
    vs: str = ""  # what the ratio is against
    target: float | None = None  # ratio target (<=), or µs target when vs == "µs"
    note: str = ""
    group: str = ""

    @property
    def median_us(self) -> float:
        return statistics.median(self.us)

    @property
    def median_ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    def met(self) -> str:
        if self.target is None:
            return ""
        value = self.median_us / 1000 if self.vs == "ms" else self.median_ratio
        if value is None:
            return ""
        return "yes" if value <= self.target else f"**no** ({value / self.target:.2f}x over)"

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "group": self.group,
            "median_us": self.median_us,
            "us": self.us,
            "ratios": self.ratios,
            "vs": self.vs,
            "target": self.target,
            "met": self.met(),
            "note": self.note,
        }


def _slices(n: int, slices: int | None) -> int:
    return max(1, min(n, slices if slices is not None else 20))


def interleaved(
    name: str,
    run: Batch,
    n: int,
    rounds: int,
    floor: str = "sign",
    *,
    floor_n: int | None = None,
    target: float | None = None,
    note: str = "",
    slices: int | None = None,
) -> Result:
    """The case in ``rounds`` rounds of ``n`` operations. A round is cut into slices (20 by
    default), each a floor batch, a case batch and a floor batch, so the floor is measured
    over the same stretch of time as the case; the round's ratio is the case's time per
    operation over the floor's."""
    floor_fn = FLOORS[floor]
    k = _slices(n, slices)
    per_case = max(1, n // k)
    per_floor = max(1, (floor_n or max(20, min(n, 200))) // k)
    run(max(1, n // 10))  # warm-up: imports, caches, first lease
    us, ratios = [], []
    for _ in range(rounds):
        case_s = floor_s = 0.0
        for _ in range(k):
            floor_s += floor_fn(per_floor)
            case_s += run(per_case)
            floor_s += floor_fn(per_floor)
        case = case_s / (per_case * k)
        us.append(case * 1e6)
        ratios.append(case / (floor_s / (2 * per_floor * k)))
    return Result(name, us, ratios, floor, target, note)


def paired(
    name: str,
    base: Batch,
    case: Batch,
    n: int,
    rounds: int,
    vs: str,
    *,
    target: float | None = None,
    note: str = "",
    warm_up: bool = True,
    slices: int | None = None,
) -> Result:
    """``case`` against ``base`` (e.g. the same operation on a 1M and a 1k store), in
    alternating slices (which goes first alternates too) so machine noise hits both alike;
    ratio per round."""
    if warm_up:
        base(max(1, n // 10))
        case(max(1, n // 10))
    k = _slices(n, slices)
    per = max(1, n // k)
    us, ratios = [], []
    for i in range(rounds):
        b = c = 0.0
        for j in range(k):
            if (i + j) % 2:
                c += case(per)
                b += base(per)
            else:
                b += base(per)
                c += case(per)
        us.append(c / (per * k) * 1e6)
        ratios.append(c / b)
    return Result(name, us, ratios, vs, target, note)


def absolute(
    name: str, run: Batch, n: int, rounds: int, *, target_ms: float | None = None, note: str = ""
) -> Result:
    """A case judged by its own time (a latency target in ms), no floor."""
    run(max(1, n // 10))
    us = [run(n) / n * 1e6 for _ in range(rounds)]
    return Result(name, us, [], "ms", target_ms, note)


def fmt_us(us: float) -> str:
    if us >= 10_000_000:
        return f"{us / 1e6:,.0f} s"
    if us >= 100_000:
        return f"{us / 1000:,.0f} ms"
    if us >= 10_000:
        return f"{us / 1000:.1f} ms"
    if us >= 1000:
        return f"{us / 1000:.2f} ms"
    return f"{us:.0f} µs"


def markdown(results: list[Result]) -> str:
    lines = [
        "| case | median | ratio min–median–max | vs | target | met |",
        "|---|---:|---|---|---|---|",
    ]
    group = None
    for r in results:
        if r.group != group:
            group = r.group
            lines.append(f"| **{group}** | | | | | |")
        if r.ratios:
            lo, mid, hi = min(r.ratios), statistics.median(r.ratios), max(r.ratios)
            ratio = f"{lo:.2f} – **{mid:.2f}** – {hi:.2f}"
        else:
            ratio = ""
        if r.target is None:
            target = ""
        elif r.vs == "ms":
            target = f"≤ {r.target:g} ms"
        else:
            target = f"≤ {r.target:g}x"
        name = r.name + (f" ({r.note})" if r.note else "")
        lines.append(f"| {name} | {fmt_us(r.median_us)} | {ratio} | {r.vs} | {target} | {r.met()} |")
    return "\n".join(lines)
