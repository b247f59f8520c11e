"""fido-emulator benchmarks (``make bench``): prints one markdown table.

Every case is measured in rounds with its floor (a bare P-256 sign, or keygen+sign, or
``python -c pass`` for the CLI, or the same operation on the smallest store) measured right
beside it, and the ratio is taken per round: the table shows min–median–max of those
ratios. Targets (issue 14): core getAssertion <= 1.8x sign, non-resident makeCredential
<= 2.2x keygen+sign, through InProcessDevice <= 3x sign; resident makeCredential and
getAssertion at 1M <= 1.2x at 1k, cold and warm; enumerateRPsBegin <= 20 ms at 10k RPs /
1M credentials; listing one RP <= 50 ms; UDP round trip <= 0.5 ms; 4 UDP client processes
on --workers 2 >= 1.6x the throughput of one.

Usage: python tools/bench/run.py [--quick] [--sizes 1000,100000,1000000] [--only GROUPS]
       [--json FILE] [--write docs/bench.md]
Seeded stores are kept in $BENCH_DIR (default: the system temp dir, fido-emu-bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from measure import Result, markdown  # noqa: E402

GROUPS = ("paths", "serve", "scale", "udp", "cli", "timers", "extra")


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {model}, Python {platform.python_version()}"


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def timer_cases(quick: bool) -> list[Result]:
    """Engine timers on a real event loop (tools/bench/timers.py; tests check them on fake
    time): KEEPALIVE every 100 ms while the core waits, CTAPHID message timeout 0.5 .. 1 s."""
    from timers import timer_figures

    figures = timer_figures(beats=10 if quick else 30)
    group = "engine timers on a real event loop"
    rows = []
    for name, ms in figures.items():
        target = 1000.0 if name.endswith("msg_timeout_ms") else None
        if name.endswith("keepalive_median_ms"):
            target = 110.0
        note = "spec window 0.5 .. 1 s" if name.endswith("msg_timeout_ms") else ""
        rows.append(Result(name.removesuffix("_ms").replace("_", " "), [ms * 1000], [], "ms",
                           target, note=note, group=group))
    return rows


def cli_cost_cases(tmp: Path, quick: bool) -> list[Result]:
    """tools/bench/cli_cost.py (`fido-emu webauthn get` on a 1k store vs `python -c pass`,
    alternating, wall and CPU time), run as its own process; its medians become rows."""
    out = tmp / "cli_cost.json"
    args = [sys.executable, str(HERE / "cli_cost.py"), "--json", str(out)]
    if quick:
        args += ["--runs", "5", "--credentials", "200"]
    subprocess.run(args, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
    r = json.loads(out.read_text())
    group = f"CLI start-up (tools/bench/cli_cost.py, median of {r['runs']} alternating runs)"
    rows = []
    for kind in ("wall", "cpu"):
        ms = r[f"webauthn_get_{kind}_ms"]
        ratio = r[f"ratio_{kind}"]
        rows.append(Result(f"webauthn get, {r['credentials']} credentials, {kind} time", [ms * 1000],
                           [ratio], "python -c pass", 6.0,
                           note=f"python -c pass {r[f'python_c_pass_{kind}_ms']:.0f} ms",
                           group=group))
    return rows


def extra_cases(tmp: Path, quick: bool) -> list[Result]:
    """Cases other modules add: each may define ``run(tmp, quick) -> list[Result]``."""
    results: list[Result] = []
    for name in ("serve_rate",):
        if not (HERE / f"{name}.py").exists():
            continue
        module = __import__(name)
        runner = getattr(module, "bench_results", None) or getattr(module, "run", None)
        if runner is None:
            continue
        print(f"{name} ...", flush=True)
        try:
            results.extend(runner(tmp, quick))
        except Exception as e:  # noqa: BLE001 - one broken module must not lose the rest
            print(f"  {name} failed: {type(e).__name__}: {e}", flush=True)
    return results


def run_group(group: str, tmp: Path, bench_dir: Path, sizes: list[int], n: int, rounds: int,
              quick: bool) -> list[Result]:
    if group == "paths":
        import paths

        return paths.run(tmp, n, rounds)
    if group == "scale":
        import scale

        return scale.run(bench_dir, sizes, n, rounds)
    if group == "udp":
        import udp_rtt

        return udp_rtt.run(tmp, n, rounds)
    if group == "serve":
        import serve

        return serve.run(tmp, n, rounds)
    if group == "cli":
        return cli_cost_cases(tmp, quick)
    if group == "timers":
        return timer_cases(quick)
    return extra_cases(tmp, quick)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer iterations, 1k/10k stores")
    ap.add_argument("--sizes", help="store sizes, comma-separated (default 1000,100000,1000000)")
    ap.add_argument("--only", help=f"comma-separated groups of {', '.join(GROUPS)}")
    ap.add_argument("--rounds", type=int, help="rounds per case (default 7, quick 3)")
    ap.add_argument("--json", help="also write every round as JSON")
    ap.add_argument("--write", help="write the table with date, machine and load to this file")
    args = ap.parse_args()
    only = set(args.only.split(",")) if args.only else set(GROUPS)
    n = 200 if args.quick else 1000
    rounds = args.rounds or (3 if args.quick else 7)
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [1000, 10_000] if args.quick else [1000, 100_000, 1_000_000]
    bench_dir = Path(os.environ.get("BENCH_DIR") or Path(tempfile.gettempdir()) / "fido-emu-bench")
    bench_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=bench_dir))
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before = load()
    print(f"fido-emulator bench — {machine()}; load {load_before}", flush=True)
    results: list[Result] = []
    try:
        for group in GROUPS:
            if group not in only:
                continue
            print(f"{group} ...", flush=True)
            try:
                results += run_group(group, tmp, bench_dir, sizes, n, rounds, args.quick)
            except Exception as e:  # noqa: BLE001 - one failing group must not lose the rest
                print(f"  {group} failed: {type(e).__name__}: {e}", flush=True)
                results.append(Result(f"{group}: failed ({type(e).__name__}: {e})", [0.0],
                                      group=group))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = load()
    head = (
        f"Measured {started} on {machine()}; load average (1/5/15 min) {load_before} at the "
        f"start, {load_after} at the end; {rounds} rounds per case."
    )
    table = markdown(results)
    print()
    print(head)
    print()
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"when": started, "machine": machine(), "load": [load_before, load_after],
             "results": [r.as_dict() for r in results]}, indent=2))
    if args.write:
        write_doc(Path(args.write), head, table)


def write_doc(path: Path, head: str, table: str) -> None:
    """Replace the figures between the markers in ``path`` (the prose around them stays)."""
    begin, end = "<!-- bench:begin -->", "<!-- bench:end -->"
    block = f"{begin}\n{head}\n\n{table}\n{end}"
    text = path.read_text() if path.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
