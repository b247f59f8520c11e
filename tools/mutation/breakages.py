"""Re-make the nine breakages of issue 18, one at a time, on a scratch copy of the tree.

Each breakage is a small edit that a real regression could make. For each one the script
copies the working tree to a temp directory, applies the edit there (never here), runs the
host tests that guard that behaviour, and reports ``killed`` (some test failed) or
``survived`` (all passed: the suite cannot see the bug). A clean copy runs first: if it is
not green, no verdict means anything. Exit status: 0 when every breakage is killed.

    python tools/mutation/breakages.py            # all nine
    python tools/mutation/breakages.py -k hmac     # those whose name contains "hmac"
    python tools/mutation/breakages.py --full      # the whole host suite (-m "not vm")
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = "authenticator/core"
# the host tests that exercise the core and the stores (fast, no guests, no browsers)
HOST_TESTS = [
    "tests/authenticator/core",
    "tests/storage",
    "tests/authenticator/rp_testing/test_webauthn_matrix.py",
    "tests/authenticator/frontdoor/test_attestation_ca.py",
]


@dataclass
class Breakage:
    name: str
    edits: list[tuple[str, str, str]]  # (file, old text, new text); old must occur once


BREAKAGES = [
    Breakage(
        "self-attestation signs the wrong bytes",
        [(f"{CORE}/attestation.py",
          "sig = keys.sign(cred.algorithm, private_key, to_sign)",
          "sig = keys.sign(cred.algorithm, private_key, auth_data)")],
    ),
    Breakage(
        "up-0 corrupts the signature instead of clearing UP",
        [(f"{CORE}/faults.py",
          "        if self.clear_up:\n            flags &= ~0x01\n",
          "        if False:\n            flags &= ~0x01\n"),
         (f"{CORE}/faults.py",
          "if not self.bad_signature or not sig:",
          "if not (self.bad_signature or self.clear_up) or not sig:")],
    ),
    Breakage(
        "CredRandom ignores the credential id",
        [("storage/sealing.py",
          '(b"\\x01" if with_uv else b"\\x00") + credential_id',
          '(b"\\x01" if with_uv else b"\\x00")')],
    ),
    Breakage(
        "the core lets exceptions escape instead of ERR_OTHER",
        [(f"{CORE}/dispatch.py",
          "except Exception:  # the core never lets a traceback reach a client",
          "except ZeroDivisionError:")],
    ),
    Breakage(
        "SQLite keeps the old credential when a discoverable one is replaced",
        [("storage/sqlite.py",
          "                replaced = _row_to_record(row)\n"
          '                db.execute("DELETE FROM credentials WHERE credential_id=?", (row[0],))\n',
          "                replaced = _row_to_record(row)\n")],
    ),
    Breakage(
        'counter_mode="global" counts per credential',
        [(f"{CORE}/device.py",
          'return GLOBAL_KEY if mode == "global" else cred.id',
          "return cred.id")],
    ),
    Breakage(
        'built-in UV "deny" approves',
        [(f"{CORE}/device.py",
          'if outcome == "approve":',
          'if outcome in ("approve", "deny"):')],
    ),
    Breakage(
        "the zero-length pinUvAuthParam probe skips the touch",
        [(f"{CORE}/commands/{cmd}.py",
          "    if pin_param is not None and len(pin_param) == 0:\n"
          "        await dev.require_presence(call, rp_id)\n",
          "    if pin_param is not None and len(pin_param) == 0:\n")
         for cmd in ("make_credential", "get_assertion")],
    ),
    Breakage(
        "hmac-secret does not check saltAuth",
        [(f"{CORE}/extensions/hmac_secret.py",
          "if not hmac.compare_digest(proto.authenticate(shared, salt_enc), salt_auth):",
          "if False:")],
    ),
]


def copy_tree(dest: Path) -> None:
    """The working tree as git sees it (tracked and new files, nothing ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, check=True, capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        src = ROOT / os.fsdecode(raw)
        if not src.is_file():
            continue  # deleted in the working tree
        target = dest / os.fsdecode(raw)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)


def apply(tree: Path, breakage: Breakage) -> None:
    for rel, old, new in breakage.edits:
        path = tree / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"{breakage.name}: the text to break is not in {rel} exactly once")
        path.write_text(text.replace(old, new))


def run_tests(tree: Path, tests: list[str], stop_first: bool) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"]
    if stop_first:
        cmd.append("-x")
    proc = subprocess.run(
        [*cmd, *tests], cwd=tree, env=env, capture_output=True, text=True, timeout=1800
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    return proc.returncode == 0, (lines[-1] if lines else proc.stderr.strip()[-200:])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only breakages whose name contains this")
    ap.add_argument("--full", action="store_true", help='the whole host suite (-m "not vm")')
    ap.add_argument("--no-baseline", action="store_true", help="skip the clean run")
    args = ap.parse_args()
    tests = ["-m", "not vm", "tests"] if args.full else HOST_TESTS
    chosen = [b for b in BREAKAGES if args.k.lower() in b.name.lower()]
    with tempfile.TemporaryDirectory(prefix="fido-breakage-") as tmp:
        if not args.no_baseline:
            clean = Path(tmp) / "clean"
            copy_tree(clean)
            ok, summary = run_tests(clean, tests, stop_first=True)
            print(f"baseline (no breakage): {'green' if ok else 'RED'} — {summary}", flush=True)
            if not ok:
                print("the clean tree is not green: verdicts would mean nothing")
                return 2
        survived = 0
        for i, breakage in enumerate(chosen):
            tree = Path(tmp) / f"b{i}"
            copy_tree(tree)
            apply(tree, breakage)
            start = time.monotonic()
            ok, summary = run_tests(tree, tests, stop_first=True)
            verdict = "SURVIVED" if ok else "killed"
            survived += ok
            print(f"{verdict:8}  {breakage.name}  ({time.monotonic() - start:.0f}s: {summary})",
                  flush=True)
            shutil.rmtree(tree, ignore_errors=True)
        print(f"{len(chosen) - survived} of {len(chosen)} breakages killed")
    return 1 if survived else 0


if __name__ == "__main__":
    raise SystemExit(main())
