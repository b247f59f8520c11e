"""The bench's bookkeeping (tools/bench/measure.py): ratios per round against the floor
measured beside them, and the table. No timing is asserted: the batches here are fakes
that report the durations they are told to."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))

import measure  # noqa: E402
from measure import FLOORS, Result, interleaved, markdown, paired  # noqa: E402


def scripted(values: list[float]):
    """A batch that reports the next per-operation time from ``values`` (seconds)."""
    it = iter(values)

    def run(n: int) -> float:
        return next(it) * n

    return run


@pytest.fixture
def fake_floor(monkeypatch):
    def install(per_op: list[float]) -> None:
        monkeypatch.setitem(FLOORS, "fake", scripted(per_op))

    return install


def test_each_round_is_divided_by_the_floor_measured_around_it(fake_floor) -> None:
    # floor before/after each round: (1, 3) -> 2, (4, 4) -> 4, (10, 10) -> 10
    fake_floor([1, 3, 4, 4, 10, 10])
    case = scripted([99, 4, 8, 10])  # warm-up, then three rounds
    r = interleaved("case", case, 10, 3, "fake", slices=1)
    assert r.ratios == [2.0, 2.0, 1.0]
    assert r.us == [4e6, 8e6, 10e6]
    assert r.median_ratio == 2.0


def test_paired_alternates_and_divides_per_round() -> None:
    base = scripted([2, 2, 4])
    case = scripted([3, 2, 2])
    r = paired("1M vs 1k", base, case, 5, 3, "1k", warm_up=False, slices=1)
    # round 0: base first (2) then case (3); round 1: case first (2), base (2); round 2: 4 vs 2
    assert r.ratios == [1.5, 1.0, 0.5]


def test_slices_sum_floor_and_case_over_the_round(fake_floor) -> None:
    # two slices per round: floor 1,3 | case 4 | ... -> floor mean 2, case mean 5 -> 2.5
    fake_floor([1, 3, 1, 3])
    case = scripted([99, 4, 6])  # warm-up, then the two slices of the round
    r = interleaved("case", case, 10, 1, "fake", floor_n=10, slices=2)
    assert r.us == [5e6]
    assert r.ratios == [2.5]


def test_targets_and_the_table() -> None:
    ok = Result("getAssertion", [40.0], [1.5, 1.7, 1.9], "sign", 1.8, group="core")
    over = Result("makeCredential", [90.0], [2.5, 2.6, 2.7], "keygen+sign", 2.2, group="core")
    latency = Result("enumerateRPsBegin", [25_000.0], [], "ms", 20.0, group="size")
    assert ok.met() == "yes"
    assert over.met().startswith("**no**")
    assert latency.met().startswith("**no**")  # 25 ms against 20 ms
    table = markdown([ok, over, latency])
    assert "| **core** |" in table and "| **size** |" in table
    assert "1.50 – **1.70** – 1.90" in table
    assert "≤ 1.8x" in table and "≤ 20 ms" in table
    assert "25.0 ms" in table


def test_the_doc_block_is_replaced_in_place(tmp_path) -> None:
    sys.path.insert(0, str(Path(measure.__file__).parent))
    import run

    doc = tmp_path / "bench.md"
    doc.write_text("# Bench\n\nprose\n\n<!-- bench:begin -->\nold\n<!-- bench:end -->\n\nmore\n")
    run.write_doc(doc, "head", "| t |")
    text = doc.read_text()
    assert "old" not in text and "head\n\n| t |" in text
    assert text.startswith("# Bench\n\nprose") and text.endswith("\n\nmore\n")
