#!/usr/bin/env python3
"""Run shell scripts as root inside a throw-away qemu guest with a stock Debian kernel.

The guest sees the host's ``/`` read-only (9p) under a tmpfs overlay, so Python, the project's
``.venv`` and Debian tools installed on the host are all there; writes go to tmpfs and vanish
with the guest. Its kernel has UHID, configfs USB gadgets with ``dummy_hcd``, USB/IP and
``hci_vhci``, which the host's kernel lacks. See tools/vm/README.md.

Library use (tools/ is not a package: put tools/vm on sys.path or load this file)::

    from harness import run_in_guest, vm_available
    ok, reason = vm_available()
    result = run_in_guest("modprobe uhid && ls -l /dev/uhid", timeout=120, modules=["uhid"])
    assert result.returncode == 0, result.log

CLI::

    python tools/vm/harness.py run SCRIPT [--modules 'uhid hid_generic'] [--udev] [--dbus]
    python tools/vm/harness.py run -c 'uname -r'
    python tools/vm/harness.py check
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
QEMU = "qemu-system-x86_64"
DEFAULT_MEMORY_MIB = 2560
DEFAULT_CPUS = 2
# subsystems whose existing devices udev is told about at start (udev=True)
UDEV_COLDPLUG_SUBSYSTEMS = "hidraw hid input usb usbmisc misc udc bluetooth tty net".split()
_PYTEST_SUMMARY = re.compile(
    r"^=*\s*(\d+ (passed|failed|skipped|deselected|errors?|xfailed|xpassed|warnings?)\b|no tests ran)"
    r".* in [0-9.]+s\b.*$"
)
_BOOT_MARKER = re.compile(r"fido-emu-vm: running script \(uptime ([0-9.]+) s\)")


class GuestError(RuntimeError):
    """The guest did not run the script to completion (no exit status came back)."""

    def __init__(self, message: str, result: GuestResult) -> None:
        super().__init__(message)
        self.result = result


class GuestTimeout(GuestError):
    """The guest was still running at the timeout and was killed."""


class GuestBootHang(GuestError):
    """The guest kernel hung before mounting its root (rare under TCG); run_in_guest retries."""


class VMNotAvailable(RuntimeError):
    """tools/vm/setup.sh has not been run (or qemu is missing)."""


@dataclass
class GuestResult:
    returncode: int
    """Exit status of the script; -1 if none came back (see GuestError)."""
    log: str
    """The script's stdout and stderr, interleaved."""
    elapsed: float
    """Wall-clock seconds from starting qemu to its exit."""
    console: str = ""
    """Everything the guest wrote to its serial console: kernel warnings and the script output."""
    dmesg: str = ""
    """The guest kernel log, taken after the script ended."""
    boot_time: float | None = None
    """Seconds from starting qemu until the script started (None if it never did)."""
    stage: str = ""
    """How far the guest got: init, modules, services, dbus, udev, script, done."""
    timeline: str = ""
    """Guest uptime (s) at each stage, one "<uptime> <stage>" per line, for diagnosing boots."""
    outdir: Path | None = field(default=None, repr=False)
    """Host path of the guest's /vmout if the caller passed one (kept after the run)."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def pytest_summary(self) -> str | None:
        """pytest's closing line ("==== 3 passed in 1.2s ====") if the log has one."""
        for line in reversed(self.log.splitlines()):
            if _PYTEST_SUMMARY.match(line.strip()):
                return line.strip()
        return None

    def check(self) -> GuestResult:
        """Raise AssertionError with the log if the script failed."""
        if self.returncode != 0:
            raise AssertionError(
                f"guest script exited {self.returncode} after {self.elapsed:.1f} s\n"
                f"--- log ---\n{self.log}\n--- dmesg tail ---\n{_tail(self.dmesg, 40)}"
            )
        return self


def vm_dir() -> Path:
    """The harness cache: $FIDO_EMU_VM_DIR or <repo>/.vm."""
    env = os.environ.get("FIDO_EMU_VM_DIR")
    return Path(env).resolve() if env else REPO_ROOT / ".vm"


@dataclass(frozen=True)
class VMImage:
    kver: str
    kernel: Path
    initrd: Path
    moddir: Path


def _read_conf(path: Path) -> dict[str, str]:
    conf: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = value.strip()
    return conf


def find_image(directory: Path | None = None) -> VMImage:
    """Locate the kernel, initramfs and modules prepared by setup.sh; raise VMNotAvailable."""
    d = directory or vm_dir()
    conf_path = d / "vm.conf"
    hint = f"run tools/vm/setup.sh (as root){'' if d == REPO_ROOT / '.vm' else f' with FIDO_EMU_VM_DIR={d}'}"
    if not conf_path.is_file():
        raise VMNotAvailable(f"VM not set up: {conf_path} missing; {hint}")
    kver = _read_conf(conf_path).get("KVER", "")
    if not kver:
        raise VMNotAvailable(f"VM not set up: no KVER in {conf_path}; {hint}")
    image = VMImage(
        kver=kver,
        kernel=d / f"vmlinux-{kver}",
        initrd=d / f"initramfs-{kver}.cpio",
        moddir=d / f"kernel-{kver}" / "lib" / "modules" / kver,
    )
    for p in (image.kernel, image.initrd, image.moddir / "modules.dep"):
        if not p.exists():
            raise VMNotAvailable(f"VM not set up: {p} missing; {hint}")
    if shutil.which(QEMU) is None:
        raise VMNotAvailable(f"{QEMU} not found (apt-get install qemu-system-x86); {hint}")
    return image


def vm_available() -> tuple[bool, str]:
    """(True, description) if guests can be started, else (False, why not and how to fix)."""
    if os.environ.get("FIDO_EMU_IN_VM") == "1":
        return False, "already inside a fido-emu guest (FIDO_EMU_IN_VM=1); guests do not nest"
    try:
        image = find_image()
    except VMNotAvailable as e:
        return False, str(e)
    return True, f"kernel {image.kver} in {image.kernel.parent}"


def _tail(text: str, lines: int) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _qemu_command(image: VMImage, outdir: Path, memory_mib: int, cpus: int) -> list[str]:
    append = " ".join(
        [
            "console=ttyS0,115200",
            "rdinit=/init",
            "panic=-1",
            "oops=panic",
            "quiet",
            "loglevel=4",
            "random.trust_cpu=on",
            "mitigations=off",
            "tsc=reliable",
            "no_timer_check",
            "i8042.noaux",
            "i8042.nokbd",
            "i8042.nopnp",
            "8250.nr_uarts=1",
            "cryptomgr.notests",
        ]
    )
    accel = os.environ.get("FIDO_EMU_VM_ACCEL", "tcg,thread=multi")
    machine = os.environ.get("FIDO_EMU_VM_MACHINE", "q35")
    virtio_9p = "virtio-9p-device" if machine.startswith("microvm") else "virtio-9p-pci"
    return [
        QEMU,
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-machine", machine,
        "-accel", accel,
        "-cpu", os.environ.get("FIDO_EMU_VM_CPU", "max"),
        "-smp", str(cpus),
        "-m", str(memory_mib),
        "-no-reboot",
        "-kernel", str(image.kernel),
        "-initrd", str(image.initrd),
        "-append", append,
        "-nic", "none",
        "-chardev", "stdio,id=con,signal=off",
        "-serial", "chardev:con",
        "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
        "-device", f"{virtio_9p},fsdev=hostroot,mount_tag=hostroot",
        "-fsdev", f"local,id=vmout,path={outdir},security_model=none",
        "-device", f"{virtio_9p},fsdev=vmout,mount_tag=vmout",
    ]  # fmt: skip


def _shell_assignments(values: Mapping[str, str]) -> str:
    out = []
    for key, value in values.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise ValueError(f"bad environment variable name: {key!r}")
        out.append(f"{key}={shlex.quote(str(value))}\n")
    return "".join(out)


def run_in_guest(
    script: str,
    timeout: float = 300.0,
    modules: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    cwd: str | os.PathLike[str] | None = None,
    udev: bool = False,
    dbus: bool = False,
    memory_mib: int = DEFAULT_MEMORY_MIB,
    cpus: int = DEFAULT_CPUS,
    outdir: str | os.PathLike[str] | None = None,
    stream: TextIO | None = None,
    boot_timeout: float = 60.0,
    boot_retries: int = 1,
) -> GuestResult:
    """Boot a guest, run ``script`` with bash as root, power off; return its result.

    script      shell script (bash) run as root with stdin /dev/null
    timeout     seconds for the whole guest (boot included); on expiry qemu is killed and
                GuestTimeout raised (its .result has the console and log so far)
    modules     kernel modules to modprobe -a before the script (no autoload in the guest);
                a list, or one space-separated string
    env         extra environment for the script (PATH, HOME=/root are set already)
    cwd         working directory of the script, a host path (default: the repo root)
    udev        start systemd-udevd and trigger coldplug before the script (Chromium needs it)
    dbus        start a system dbus-daemon before the script (bluetoothd needs it)
    outdir      host directory shared writable as /vmout ($FIDO_EMU_VM_OUT) and kept;
                default: a temporary directory, removed afterwards
    stream      if set, the guest console is copied there live (e.g. sys.stderr)
    boot_timeout, boot_retries
                a guest whose kernel has not mounted its root filesystem after boot_timeout
                seconds is killed and booted again, up to boot_retries times (GuestBootHang)

    Raises VMNotAvailable if setup.sh has not been run, GuestTimeout on timeout, GuestError if
    the guest stopped without reporting the script's exit status (boot failure, kernel panic).
    A failing script is not an exception: check ``result.returncode`` or call ``.check()``.
    """
    image = find_image()
    workdir = Path(cwd).resolve() if cwd is not None else REPO_ROOT
    if isinstance(modules, str):
        modules = [modules]
    module_list = [name for entry in modules for name in entry.split()]
    if outdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="fido-emu-vm-")
        run_dir = Path(tmp.name)
    else:
        tmp = None
        run_dir = Path(outdir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        for name in ("rc", "log", "stage", "stages", "dmesg"):
            (run_dir / name).unlink(missing_ok=True)
    try:
        shutil.copy(HERE / "guest-init.sh", run_dir / "guest-init.sh")
        (run_dir / "script.sh").write_text(script)
        (run_dir / "config.sh").write_text(
            _shell_assignments(
                {
                    "VM_KVER": image.kver,
                    "VM_MODDIR": str(image.moddir),
                    "VM_MODULES": " ".join(module_list),
                    "VM_CWD": str(workdir),
                    "VM_UDEV": "1" if udev else "0",
                    "VM_DBUS": "1" if dbus else "0",
                    "VM_UDEV_SUBSYSTEMS": " ".join(UDEV_COLDPLUG_SUBSYSTEMS),
                    "VM_ECHO": "1",
                }
            )
        )
        guest_env = {"FIDO_EMU_IN_VM": "1", "FIDO_EMU_VM_OUT": "/vmout", **(env or {})}
        (run_dir / "env.sh").write_text(_shell_assignments(guest_env))
        deadline = time.monotonic() + timeout
        for attempt in range(boot_retries + 1):
            remaining = deadline - time.monotonic()
            try:
                result = _boot(image, run_dir, remaining, memory_mib, cpus, stream, boot_timeout)
                break
            except GuestBootHang:
                if attempt == boot_retries or deadline - time.monotonic() < boot_timeout:
                    raise
                if stream is not None:
                    stream.write("harness: guest hung while booting; retrying\n")
        if outdir is not None:
            result.outdir = run_dir
        return result
    finally:
        if tmp is not None:
            tmp.cleanup()


def run_pytest_in_guest(
    pytest_args: Sequence[str],
    timeout: float = 1800.0,
    modules: Iterable[str] = (),
    env: Mapping[str, str] | None = None,
    *,
    python: str | None = None,
    **kwargs: Any,
) -> GuestResult:
    """Run ``python -m pytest ARGS`` in one guest (one boot per suite, not per test).

    ``python`` defaults to the interpreter running this harness (the project's .venv, which
    the guest sees at the same path). Other keyword arguments go to run_in_guest. The result's
    returncode is pytest's; ``result.pytest_summary`` is its closing line, for re-printing.
    """
    interpreter = python or sys.executable
    script = "exec " + shlex.join([interpreter, "-m", "pytest", *pytest_args]) + "\n"
    merged_env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", **(env or {})}
    return run_in_guest(script, timeout=timeout, modules=modules, env=merged_env, **kwargs)


def _boot(
    image: VMImage,
    run_dir: Path,
    timeout: float,
    memory_mib: int,
    cpus: int,
    stream: TextIO | None,
    boot_timeout: float | None,
) -> GuestResult:
    cmd = _qemu_command(image, run_dir, memory_mib, cpus)
    console: list[str] = []
    boot_time: list[float] = []
    start = time.monotonic()
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )

    def reader() -> None:
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "")
            console.append(line)
            if not boot_time and _BOOT_MARKER.search(line):
                boot_time.append(time.monotonic() - start)
            if stream is not None:
                stream.write(line)
                stream.flush()

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    timed_out = boot_hung = False
    stages = run_dir / "stages"  # stage 1 creates it once the root filesystem is mounted
    try:
        while True:
            try:
                proc.wait(timeout=0.25)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic() - start
                if now >= timeout:
                    timed_out = True
                elif boot_timeout is not None and now >= boot_timeout and not stages.exists():
                    boot_hung = True
                else:
                    continue
                proc.kill()
                proc.wait()
                break
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    elapsed = time.monotonic() - start
    thread.join(timeout=5)

    def read(name: str) -> str:
        try:
            return (run_dir / name).read_text(errors="replace")
        except FileNotFoundError:
            return ""

    rc_text = read("rc").strip()
    result = GuestResult(
        returncode=int(rc_text) if rc_text.lstrip("-").isdigit() else -1,
        log=read("log"),
        elapsed=elapsed,
        console="".join(console),
        dmesg=read("dmesg"),
        boot_time=boot_time[0] if boot_time else None,
        stage=read("stage").strip(),
        timeline=read("stages"),
    )
    if boot_hung:
        raise GuestBootHang(
            f"guest kernel did not reach its root filesystem in {boot_timeout:.0f} s; killed\n"
            f"--- console tail ---\n{_tail(result.console, 30)}",
            result,
        )
    if timed_out:
        raise GuestTimeout(
            f"guest killed after {timeout:.0f} s timeout (stage: {result.stage or 'boot'})\n"
            f"--- console tail ---\n{_tail(result.console, 30)}",
            result,
        )
    if not rc_text:
        raise GuestError(
            f"guest exited (qemu status {proc.returncode}) without the script's exit status "
            f"(stage: {result.stage or 'boot'})\n--- console tail ---\n{_tail(result.console, 40)}",
            result,
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a shell script in a guest; exits with its status")
    src = run.add_mutually_exclusive_group(required=True)
    src.add_argument("script", nargs="?", help="script file ('-' for stdin)")
    src.add_argument("-c", dest="inline", help="script text")
    run.add_argument("-m", "--modules", default="", help="modules to load, space-separated")
    run.add_argument("--udev", action="store_true", help="start systemd-udevd")
    run.add_argument("--dbus", action="store_true", help="start the system dbus-daemon")
    run.add_argument("-t", "--timeout", type=float, default=600.0)
    run.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MIB, help="MiB")
    run.add_argument("--cpus", type=int, default=DEFAULT_CPUS)
    run.add_argument("--cwd", default=None, help="guest working directory (default: cwd)")
    run.add_argument("--outdir", default=None, help="host dir shared as /vmout, kept")
    run.add_argument("-e", "--env", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("-q", "--quiet", action="store_true", help="do not echo the console")
    sub.add_parser("check", help="say whether the VM is set up")
    args = parser.parse_args(argv)

    if args.command == "check":
        ok, reason = vm_available()
        print(("ok: " if ok else "not available: ") + reason)
        return 0 if ok else 1

    if args.inline is not None:
        script = args.inline
    elif args.script == "-":
        script = sys.stdin.read()
    else:
        script = Path(args.script).read_text()
    env = dict(item.split("=", 1) for item in args.env)
    try:
        result = run_in_guest(
            script,
            timeout=args.timeout,
            modules=args.modules.split(),
            env=env,
            cwd=args.cwd or os.getcwd(),
            udev=args.udev,
            dbus=args.dbus,
            memory_mib=args.memory,
            cpus=args.cpus,
            outdir=args.outdir,
            stream=None if args.quiet else sys.stderr,
        )
    except VMNotAvailable as e:
        print(f"harness: {e}", file=sys.stderr)
        return 125
    except GuestError as e:
        print(f"harness: {e}", file=sys.stderr)
        return 124 if isinstance(e, GuestTimeout) else 125
    if args.quiet:
        sys.stdout.write(result.log)
    boot = f"{result.boot_time:.1f} s" if result.boot_time is not None else "?"
    print(
        f"harness: exit {result.returncode}, boot-to-script {boot}, total {result.elapsed:.1f} s",
        file=sys.stderr,
    )
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
