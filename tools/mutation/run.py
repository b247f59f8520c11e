"""`make mutation`: a bounded mutmut run over the core, the stores and the CTAPHID engine.

mutmut (configured in pyproject.toml, ``[tool.mutmut]``) makes every mutant of the listed
modules and runs, for each, only the tests that executed the mutated function. All of them
take hours on two cores, so this samples: a fixed-seed sample of ``--per-module`` mutants
of every module (the same sample every time, so figures compare across runs), within a
wall-clock ``--budget``. Results stay in ``mutants/`` and a second run resumes. The score
per package is printed and written to ``mutants/score.json``.

    python tools/mutation/run.py                      # 15 per module, 45 min at most
    python tools/mutation/run.py --per-module 0       # every mutant (hours)
    python tools/mutation/run.py --report             # only print the figures so far
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MUTANTS = ROOT / "mutants"
MUTMUT = [sys.executable, "-m", "mutmut"]
KILLED = {1, 3, 36, -24, 24, 152, 255, 37}  # failed test, pytest error, timeout, type check
SURVIVED = {0}
NO_TESTS = {5, 33}

# Survivors judged equivalent one by one (valid for the code as of the date in
# docs/testing.md; mutmut's numbering moves when a function changes).
EXPLAINED = {
    "authenticator.core.keys.x_cose_public_key__mutmut_41":
        "RSA e byte length (bits + 8) // 8: the same for e = 65537, the only exponent made",
    "storage.memory.xǁMemoryStoreǁ_wrote__mutmut_3":
        "generation steps by 2 instead of 1: readers only compare it for change",
    "authenticator.core.commands.authenticator_config.x_handle__mutmut_53":
        "drops an explicit rp_id=None that is the parameter's default",
    "authenticator.core.commands.ctap1.x__register__mutmut_20":
        'rp_id "" vs None for a U2F key: only discoverable records keep rp_id',
    "authenticator.core.pin_state.xǁPinStateǁ_check_pin_hash__mutmut_9":
        "the default for a missing retries value: set_pin always writes it first",
    "storage.sqlite.xǁSqliteStoreǁcredentials_for_rp__mutmut_16":
        "the read cache is not filled: the same rows, only slower",
    "storage.sqlite.xǁSqliteStoreǁ_invalidate__mutmut_3":
        "generation steps by 2 instead of 1: readers only compare it for change",
    "authenticator.core.commands.make_credential.x_handle__mutmut_261":
        "REGISTRY.get() of a non-text extension name is None either way",
    "authenticator.core.pin_state.xǁPinStateǁtoken_used__mutmut_2":
        "user_present None instead of False: only tested for truth",
    "authenticator.core.commands.credential_management.x__next__mutmut_6":
        "remaining >= 0 past the end: the refetch finds nothing, NOT_ALLOWED either way",
    "authenticator.core.commands.make_credential.x_handle__mutmut_333":
        "the store drops a replaced credential's counter row itself; the cache entry is dead",
    "authenticator.core.pin_state.xǁPinStateǁ_spend__mutmut_1":
        "the initial 'left' None instead of False: only tested for truth",
}


def mutant_diff(name: str) -> tuple[list[str], list[str]]:
    out = subprocess.run([*MUTMUT, "show", name], cwd=ROOT, capture_output=True, text=True).stdout
    lines = [ln for ln in out.splitlines() if not ln.startswith(("+++", "---"))]
    return ([ln[1:].strip() for ln in lines if ln.startswith("-")],
            [ln[1:].strip() for ln in lines if ln.startswith("+")])


_STATUS = re.compile(r"^raise CtapStatusError\((ERR\.\w+)")


def equivalent(name: str) -> str | None:
    """Why a survivor cannot change behaviour, or None. Text-only mutants: the detail of a
    CtapStatusError (never sent to the client; the status byte is), a log message, the
    case of an SQL keyword."""
    if name in EXPLAINED:
        return EXPLAINED[name]
    old, new = mutant_diff(name)
    if len(old) != 1 or len(new) != 1:
        return None
    a, b = old[0], new[0]
    m = _STATUS.match(a)
    if m and b.startswith(f"raise CtapStatusError({m.group(1)}"):
        return "error detail text only (the status byte is unchanged)"
    exc = re.match(r"^raise (\w+)\((f?[\"'])", a)
    if exc and exc.group(1) != "CtapStatusError" and b.startswith(f"raise {exc.group(1)}("):
        return "exception message text only (same exception type)"
    if a.startswith("log.") and b.startswith("log.") and a.split("(")[0] == b.split("(")[0]:
        return "log message text only"
    if a.lower() == b.lower() and ("SELECT" in a.upper() or "FROM" in a.upper()):
        return "SQL keyword case"
    return None


def package_of(module: str) -> str:
    """The package a figure is reported under."""
    parts = module.split(".")
    if parts[:3] == ["authenticator", "core", "commands"]:
        return "authenticator.core.commands"
    if parts[:3] == ["authenticator", "core", "extensions"]:
        return "authenticator.core.extensions"
    if parts[:2] == ["authenticator", "core"]:
        return "authenticator.core (models)"
    return ".".join(parts[:2]) if parts[0] == "transports" else parts[0]


def load_meta() -> dict[str, dict[str, int | None]]:
    """module -> {mutant name: exit code or None}."""
    out: dict[str, dict[str, int | None]] = {}
    for meta in MUTANTS.rglob("*.py.meta"):
        rel = meta.relative_to(MUTANTS).as_posix()[: -len(".py.meta")]
        module = rel.replace("/", ".").removesuffix(".__init__")
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if codes:
            out[module] = codes
    return out


def generate() -> None:
    """Make the mutants and mutmut's test map without running any mutant."""
    subprocess.run([*MUTMUT, "run", "--max-children", "2", "no.such.mutant*"], cwd=ROOT)


def sample(meta: dict[str, dict[str, int | None]], per_module: int) -> list[str]:
    rng = random.Random(18)
    chosen: list[str] = []
    for module in sorted(meta):
        names = sorted(meta[module])
        chosen += names if per_module <= 0 else rng.sample(names, min(per_module, len(names)))
    return chosen


def report(meta: dict[str, dict[str, int | None]], chosen: set[str] | None) -> dict:
    per_pkg: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    survivors: list[str] = []
    explained: list[str] = []
    for module, codes in meta.items():
        pkg = package_of(module)
        for name, code in codes.items():
            if chosen is not None and name not in chosen:
                continue
            if code is None:
                key = "not run"
            elif code in KILLED:
                key = "killed"
            elif code in SURVIVED:
                why = equivalent(name)
                if why is None:
                    key = "survived"
                    survivors.append(name)
                else:
                    key = "equivalent"
                    explained.append(f"{name}: {why}")
            elif code in NO_TESTS:
                key = "no tests"
            else:
                key = "other"
            per_pkg[pkg][key] += 1
    rows = {}
    print(f"{'package':34} {'killed':>7} {'survived':>8} {'equiv.':>6} {'no tests':>8}"
          f" {'not run':>7}  score")
    for pkg in sorted(per_pkg):
        c = per_pkg[pkg]
        judged = c["killed"] + c["survived"] + c["no tests"]
        score = 100.0 * c["killed"] / judged if judged else 0.0
        rows[pkg] = {**c, "score": round(score, 1)}
        print(f"{pkg:34} {c['killed']:7} {c['survived']:8} {c['equivalent']:6}"
              f" {c['no tests']:8} {c['not run']:7}  {score:5.1f}%")
    total = {k: sum(c[k] for c in per_pkg.values()) for k in ("killed", "survived", "no tests")}
    judged = sum(total.values())
    score = 100.0 * total["killed"] / judged if judged else 0.0
    eq = sum(c["equivalent"] for c in per_pkg.values())
    print(f"{'all':34} {total['killed']:7} {total['survived']:8} {eq:6} {total['no tests']:8}"
          f" {'':7}  {score:5.1f}%")
    print("score = killed / (killed + survived + no tests); equivalent mutants are not counted")
    for line in sorted(survivors):
        print("survived:", line)
    for line in sorted(explained):
        print("equivalent:", line)
    return {"date": datetime.date.today().isoformat(), "packages": rows,
            "total": {**total, "equivalent": eq, "score": round(score, 1)},
            "survivors": sorted(survivors), "equivalent": sorted(explained)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-module", type=int, default=15, help="mutants per module (0: all)")
    ap.add_argument("--budget", type=float, default=45.0, help="minutes at most")
    ap.add_argument("--report", action="store_true", help="print the figures so far, run nothing")
    ap.add_argument("--recheck", action="store_true",
                    help="run the sample's survivors again (after adding tests)")
    args = ap.parse_args()
    os.environ.pop("PYTHONPATH", None)  # the mutated copy in mutants/ must be what is imported
    if not args.report:
        generate()
    meta = load_meta()
    if not meta:
        print("no mutants: run without --report first")
        return 1
    chosen = sample(meta, args.per_module)
    rerun = {None, 0, 5, 33} if args.recheck else {None}
    pending = {n for codes in meta.values() for n, code in codes.items() if code in rerun}
    todo = [n for n in chosen if n in pending]
    if not args.report and todo:
        print(f"{len(todo)} of {len(chosen)} sampled mutants still to run "
              f"(budget {args.budget:.0f} min)", flush=True)
        try:
            subprocess.run([*MUTMUT, "run", "--max-children", "2", *todo], cwd=ROOT,
                           timeout=args.budget * 60)
        except subprocess.TimeoutExpired:
            print("budget spent: figures below count what ran; run again to resume")
        meta = load_meta()
    result = report(meta, set(chosen))
    (MUTANTS / "score.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
