"""Run the SoloKeys FIDO2 conformance suite (solokeys/fido2-tests) against ``fido-emu run``.

``make conformance`` and ``tests/conformance/test_conformance.py`` call this. It copies the
read-only suite into the git-ignored ``.conformance/`` folder, installs its pinned requirements
into a venv of its own (kept while they do not change; pyscard, NFC only, left out), applies
``array-order.patch`` (the one suite bug we patch, see docs/conformance.md), starts
``fido-emu run --transport udp --presence auto --allow-reboot-report`` with a fresh store on the
solo1 simulator ports the suite hard-codes (device 127.0.0.1:8111, client 7112), waits until a
CTAPHID INIT is answered, runs ``pytest --sim --vendor solokeys tests/standard`` and fails on any
failure or error not in :data:`EXPECTED_FAILURES` (and on an expected failure that passes, so
the list never goes stale). Exit status 0 = conformant, 1 = divergence, 2 = set-up problem.

Suite location: ``$FIDO_EMU_CONFORMANCE_SUITE``, default ``<repo>/../shared/third_party/fido2-tests``.
To test another authenticator, run the suite the same way against its UDP simulator (or with
``pytest tests/standard`` against a USB key, see the suite's README).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
WORK = REPO / ".conformance"
DEFAULT_SUITE = REPO.parent / "shared" / "third_party" / "fido2-tests"
PATCH = HERE / "array-order.patch"
DEVICE = ("127.0.0.1", 8111)  # hard-coded in solo-python's HidOverUDP, as is the client's 7112
CLIENT_PORT = 7112
EMULATOR_MODULE = "authenticator.frontdoor.cli"
SUITE_TIMEOUT = 300.0

# Failures we accept, each with its reason. Keep it short (target: at most 5) and justified by
# the CTAP 2.1 text or a suite quirk; a listed test that passes fails the run (stale entry).
EXPECTED_FAILURES: dict[str, str] = {
    # CTAP 2.1 §6.1.2 step 5 (makeCredential options): "up" = true is accepted (a client may
    # send it; only up = false is CTAP2_ERR_INVALID_OPTION). The suite wants the CTAP 2.0
    # answer INVALID_OPTION; `--set make_cred_up_option_invalid=true` gives it
    # (docs/conformance.md).
    "tests/standard/fido2/test_getinfo.py::test_Check_up_option": "CTAP 2.1 §6.1.2 up=true",
    # CTAP 2.1 §6.5.5.7 / §6.1.2 step 3: with a PIN set and makeCredUvNotRqd=true a
    # non-discoverable makeCredential without pinUvAuthParam is allowed (UV not required);
    # CTAP 2.0 answered PIN_REQUIRED. The two tests below expect the 2.0 answer.
    "tests/standard/fido2/pin/test_pin.py::TestPin::test_get_no_pin_auth[123456789A]":
        "CTAP 2.1 makeCredUvNotRqd",
    "tests/standard/fido2/pin/test_pin.py::TestPin::test_make_credential_no_pin[123456789A]":
        "CTAP 2.1 makeCredUvNotRqd",
    # CTAP 2.1 §6.1.2 step 1 / §6.2.2 step 1: a zero-length pinUvAuthParam is the "touch to
    # select" probe: the authenticator waits for presence and answers PIN_NOT_SET or
    # PIN_INVALID (PIN set); CTAP 2.0 said PIN_AUTH_INVALID.
    "tests/standard/fido2/pin/test_pin.py::TestPin::test_zero_length_pin_auth[123456789A]":
        "CTAP 2.1 zero-length pinUvAuthParam",
    # Suite quirk (Solo's choice): a bad hmac-secret saltAuth must answer 0xE0, the first code
    # of CTAP's extension-specific range (CTAP2_ERR_EXTENSION_FIRST..LAST); the hmac-secret
    # text prescribes no such code. We answer PIN_AUTH_INVALID, the status of every failed
    # check of an HMAC under the pinUvAuth shared secret (CTAP 2.1 §6.5), which clients map.
    "tests/standard/fido2/extensions/test_hmac_secret.py::TestHmacSecret::test_bad_auth":
        "Solo vendor code 0xE0 for a bad saltAuth",
}


class SetupError(Exception):
    """The harness could not run the suite (exit status 2)."""


def log(message: str) -> None:
    print(f"conformance: {message}", file=sys.stderr, flush=True)


def suite_source() -> Path:
    """``$FIDO_EMU_CONFORMANCE_SUITE``, else ``../shared/third_party/fido2-tests`` beside the
    clone (or beside the main checkout when this is a ``git worktree``)."""
    given = os.environ.get("FIDO_EMU_CONFORMANCE_SUITE")
    candidates = [Path(given)] if given else [DEFAULT_SUITE]
    if not given:
        common = subprocess.run(
            ["git", "rev-parse", "--path-format=absolute", "--git-common-dir"],
            cwd=REPO, capture_output=True, text=True,
        ).stdout.strip()
        if common:
            candidates.append(Path(common).parent.parent / "shared/third_party/fido2-tests")
        # a clone nested deeper than its shared/ folder (CI checkouts vary): look upwards
        candidates += [p / "shared/third_party/fido2-tests" for p in REPO.parents[1:]]
    for path in candidates:
        if (path / "tests" / "standard").is_dir():
            return path
    raise SetupError(
        f"conformance suite not found at {candidates[0]} (set FIDO_EMU_CONFORMANCE_SUITE to a "
        "copy of solokeys/fido2-tests)"
    )


def copy_suite(source: Path, dest: Path) -> None:
    """A fresh writable copy (the source is read-only), then our one patch."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(".git", "__pycache__", "venv"))
    for path in dest.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    # git apply outside any repository: the ceiling stops it from finding ours around .conformance
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(dest.parent)}
    result = subprocess.run(
        ["git", "apply", "-p1", str(PATCH)], cwd=dest, env=env, capture_output=True, text=True
    )
    if result.returncode:
        raise SetupError(f"array-order.patch does not apply: {result.stderr.strip()}")


def requirements(source: Path) -> list[str]:
    lines = (source / "requirements-pinned.txt").read_text().splitlines()
    return [x.strip() for x in lines if x.strip() and not x.lower().startswith("pyscard")]


def ensure_venv(venv: Path, reqs: list[str]) -> Path:
    """The suite's own venv; rebuilt only when its requirements or our Python change."""
    stamp_value = hashlib.sha256("\n".join([sys.version, *reqs]).encode()).hexdigest()
    stamp = venv / ".fido-emu-stamp"
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_value:
        return python
    if venv.exists():
        shutil.rmtree(venv)
    log(f"creating the suite's venv ({', '.join(reqs)})")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *reqs],
        capture_output=True, text=True,
    )
    if result.returncode:
        raise SetupError(f"pip install of the suite's requirements failed:\n{result.stderr}")
    stamp.write_text(stamp_value)
    return python


def check_ports_free() -> None:
    for port in (DEVICE[1], CLIENT_PORT):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError as e:
                raise SetupError(
                    f"UDP port {port} is in use ({e}); the suite hard-codes 8111 and 7112"
                ) from e


def wait_for_init(proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Until the emulator answers a broadcast CTAPHID INIT (or dies, or the deadline passes)."""
    nonce = os.urandom(8)
    init = struct.pack(">IBH", 0xFFFFFFFF, 0x86, 8) + nonce
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        while True:
            if proc.poll() is not None:
                raise SetupError(f"fido-emu run exited with status {proc.returncode}")
            if time.monotonic() > deadline:
                raise SetupError("fido-emu run did not answer CTAPHID INIT in time")
            s.sendto(init.ljust(64, b"\0"), DEVICE)
            try:
                while True:
                    data, _ = s.recvfrom(64)
                    if data[4] == 0x86 and data[7:15] == nonce:
                        return
            except TimeoutError:
                continue


def start_emulator(store: Path, logfile: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop("FIDO_EMU_PIN", None)
    cmd = [
        sys.executable, "-m", EMULATOR_MODULE, "run", "--transport", "udp",
        "--udp-host", DEVICE[0], "--udp-port", str(DEVICE[1]), "--presence", "auto",
        "--allow-reboot-report", "--store", str(store),
    ]
    log("starting " + " ".join(cmd[2:]))
    with logfile.open("wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def outcomes(junit: Path) -> dict[str, str]:
    """test id -> passed / failed / error / skipped, from pytest's JUnit XML."""
    result: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "")
        parts = module.split(".")
        # classname is "tests.standard.x.test_y[.Class]"; find where the module ends
        for cut in range(len(parts), 0, -1):
            if (WORK / "suite" / Path(*parts[:cut])).with_suffix(".py").exists():
                break
        test_id = "/".join(parts[:cut]) + ".py"
        test_id += "".join(f"::{p}" for p in parts[cut:]) + f"::{case.get('name')}"
        kinds = {child.tag for child in case}
        if "error" in kinds:
            state = "error"
        elif "failure" in kinds:
            state = "failed"
        elif "skipped" in kinds:
            state = "skipped"
        else:
            state = "passed"
        if result.get(test_id) in ("failed", "error"):
            continue  # a teardown error entry must not hide the call's failure
        result[test_id] = state
    return result


def run(extra_pytest_args: list[str]) -> int:
    source = suite_source()
    WORK.mkdir(exist_ok=True)
    suite = WORK / "suite"
    copy_suite(source, suite)
    python = ensure_venv(WORK / "venv", requirements(source))
    check_ports_free()
    junit = WORK / "report.xml"
    # our pyproject.toml must not configure the suite's pytest (rootdir discovery would find it)
    ini = WORK / "pytest.ini"
    ini.write_text("[pytest]\n")
    junit.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="fido-emu-conformance-") as tmp:
        logfile = WORK / "emulator.log"
        proc = start_emulator(Path(tmp) / "store.db", logfile)
        try:
            wait_for_init(proc, time.monotonic() + 60)
            log("emulator answers INIT; running the suite")
            started = time.monotonic()
            result = subprocess.run(
                [str(python), "-m", "pytest", "--sim", "--vendor", "solokeys", "tests/standard",
                 "-c", str(ini), f"--rootdir={suite}", "-p", "no:cacheprovider", "-q",
                 f"--junitxml={junit}", *extra_pytest_args],
                cwd=suite, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=SUITE_TIMEOUT,
            )
            elapsed = time.monotonic() - started
        finally:
            stop(proc)
        emulator_log = logfile.read_text(errors="replace")
    if not junit.exists():
        raise SetupError(f"the suite produced no report:\n{result.stdout[-4000:]}{result.stderr}")
    states = outcomes(junit)
    counts = {k: sum(1 for v in states.values() if v == k)
              for k in ("passed", "failed", "error", "skipped")}
    bad = sorted(t for t, s in states.items() if s in ("failed", "error"))
    unexpected = [t for t in bad if t not in EXPECTED_FAILURES]
    stale = [t for t in EXPECTED_FAILURES if states.get(t) not in ("failed", "error")]
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    print(
        f"conformance: {len(states)} tests in {elapsed:.1f} s: {summary} "
        f"({len(bad) - len(unexpected)} expected failures listed)",
        flush=True,
    )
    status = 0
    if "Traceback" in emulator_log:
        print("conformance: the emulator logged a traceback (see .conformance/emulator.log)")
        status = 1
    for test_id in unexpected:
        print(f"UNEXPECTED {states[test_id].upper()}: {test_id}")
        status = 1
    for test_id in stale:
        print(f"EXPECTED FAILURE NOW {states.get(test_id, 'missing').upper()}: {test_id} "
              "(remove it from EXPECTED_FAILURES)")
        status = 1
    if unexpected:
        print(result.stdout[-20000:])
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pytest_args", nargs="*", help="extra arguments for the suite's pytest")
    args = parser.parse_args(argv)
    try:
        return run(args.pytest_args)
    except SetupError as e:
        print(f"conformance: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
