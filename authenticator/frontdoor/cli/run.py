"""``fido-emu run`` and ``fido-emu gadget``: serve one authenticator over real transports.

Several ``--transport`` options share one authenticator (one command at a time across
them). SIGINT/SIGTERM shut down cleanly (the UHID device is destroyed, the gadget unbound and
removed, as when a key is unplugged); SIGUSR1 simulates unplug/replug (power cycle). Each CTAP command is logged
as command, rpId, status and duration, never a secret.

``--instances N`` serves N independent authenticators over UDP (own store each, ports
``--udp-port`` + i) for load tests; ``--workers K`` spreads them over K processes.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from authenticator.frontdoor.cli.common import add_presence_option, add_store_options
from authenticator.frontdoor.dashboard import add_dashboard_options

log = logging.getLogger("fido_emu")
TRANSPORTS = ("udp", "uhid", "gadget", "ble")
# what each served link is to a client (getInfo transports, WebAuthn getTransports()): the UDP
# simulator carries CTAPHID reports, so clients see a USB HID key
WEBAUTHN_TRANSPORT = {"udp": "usb", "uhid": "usb", "gadget": "usb", "ble": "ble"}


def served_transports(args: argparse.Namespace) -> dict:
    """Config defaults that make getInfo's transports (0x09) list what this run serves."""
    return {"transports": tuple(dict.fromkeys(WEBAUTHN_TRANSPORT[t] for t in args.transport))}


def _address(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return (host or default_host, int(port))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="serve the authenticator over UDP, UHID, a USB gadget or BLE")
    p.add_argument(
        "--transport", action="append", choices=TRANSPORTS, required=True,
        help="repeat to serve several transports at once",
    )
    p.add_argument("--udp-port", type=int, default=8111, help="UDP listen port (default 8111)")
    p.add_argument("--udp-host", default="127.0.0.1", help="UDP listen address")
    # replies go to each datagram's sender now; kept so that old scripts still start
    p.add_argument("--udp-reply-port", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--udp-reply-host", default=None, help=argparse.SUPPRESS)
    p.add_argument(
        "--allow-reboot-report", action="store_true",
        help="UDP: honour the solo1 simulator's magic reboot report (power cycle, channels "
        "kept), as fido2-tests expects. Off by default: any local process could send it",
    )
    p.add_argument(
        "--instances", type=int, default=1, metavar="N",
        help="UDP: serve N independent authenticators on ports --udp-port+0..N-1, each with its "
        "own store (--store PATH becomes PATH-STEM-i.SUFFIX)",
    )
    p.add_argument(
        "--workers", type=int, default=1, metavar="K",
        help="spread the --instances over K processes (throughput grows with cores)",
    )
    p.add_argument("--pid", type=lambda s: int(s, 0), default=None, help="USB product id (VID is 0x1209)")
    p.add_argument("--name", default=None, help="HID device name (UHID) / product string (gadget)")
    p.add_argument("--udc", default=None, help="gadget: the UDC to bind (default: the first one)")
    p.add_argument("--ble-adapter", default=None, help="BLE: BlueZ adapter, e.g. hci0 (default: first)")
    p.add_argument("--ble-pairing", choices=["just-works", "passkey", "none"], default="just-works")
    p.add_argument(
        "--ble-cpl", type=int, default=None,
        help="BLE: cap fidoControlPointLength (20..512; default ATT MTU - 3)",
    )
    p.add_argument("--fault", action="append", metavar="SPEC", help="inject a fault (repeatable)")
    add_store_options(p, creates=True)
    add_presence_option(p, "prompt", web=True)
    add_dashboard_options(p)
    p.set_defaults(func=run)

    g = sub.add_parser("gadget", help="create or remove the configfs USB HID gadget")
    g.add_argument("action", choices=["setup", "teardown"])
    g.add_argument("--pid", type=lambda s: int(s, 0), default=None)
    g.add_argument("--udc", default=None)
    g.set_defaults(func=run_gadget)


def _gadget_config(args: argparse.Namespace):
    from transports.gadget import GadgetConfig

    cfg = GadgetConfig()
    if getattr(args, "pid", None) is not None:
        cfg.pid = args.pid
    if getattr(args, "udc", None):
        cfg.udc = args.udc
    if getattr(args, "name", None):
        cfg.product = args.name
    return cfg


def run_gadget(args: argparse.Namespace) -> int:
    from authenticator.frontdoor.cli import CliError
    from transports import gadget

    cfg = _gadget_config(args)
    try:
        if args.action == "setup":
            path = gadget.setup(cfg)
            print(f"gadget {cfg.name} bound; device node {path}")
        else:
            gadget.teardown(cfg)
            print(f"gadget {cfg.name} removed")
    except (gadget.GadgetError, OSError) as e:
        raise CliError(f"gadget {args.action} failed: {e}") from e
    return 0


def _udp(auth, args: argparse.Namespace, port: int, lock: asyncio.Lock):
    from transports.udp import UdpTransport

    return UdpTransport(
        auth, listen=(args.udp_host, port), allow_reboot_report=args.allow_reboot_report,
        transport="udp", lock=lock, u2f=auth.config.u2f,
    )


async def serve(args: argparse.Namespace, auth) -> None:
    from authenticator.frontdoor.cli import CliError

    lock = asyncio.Lock()
    opts = dict(lock=lock, u2f=auth.config.u2f)
    transports = []
    for name in dict.fromkeys(args.transport):
        if name == "udp":
            transports.append(_udp(auth, args, args.udp_port, lock))
        elif name == "uhid":
            from transports.uhid import UhidDevice, UhidTransport

            dev = UhidDevice()
            if args.pid is not None:
                dev.pid = args.pid
            if args.name:
                dev.name = args.name
            transports.append(UhidTransport(auth, dev, **opts))
        elif name == "ble":
            try:
                from transports.ble.peripheral import BlePeripheralTransport
            except ImportError as e:
                raise CliError(f"BLE needs the ble extra ({e.name}): pip install 'fido-emulator[ble]'") from e
            transports.append(BlePeripheralTransport(
                auth, adapter=args.ble_adapter, name=args.name or "fido-emu",
                control_point_length=args.ble_cpl, pairing=args.ble_pairing, **opts,
            ))
        else:
            from transports.gadget import GadgetTransport

            transports.append(GadgetTransport(auth, _gadget_config(args), **opts))
    started = []
    dashboard = None
    try:
        for t in transports:
            try:
                await t.start()
            except (OSError, RuntimeError) as e:
                raise CliError(f"cannot start {type(t).__name__}: {e}") from e
            started.append(t)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)

        def power_cycle() -> None:
            for t in started:  # each drops its channels, then the core's volatile state
                (getattr(t, "power_cycle", None) or t.engine.power_cycle)()

        loop.add_signal_handler(signal.SIGUSR1, power_cycle)
        if args.dashboard:
            from authenticator.frontdoor.dashboard import start_dashboard

            dashboard = await start_dashboard(
                auth, args, transports=list(dict.fromkeys(args.transport)), power_cycle=power_cycle
            )
        names = ", ".join(dict.fromkeys(args.transport))
        print(
            f"fido-emu: serving profile {auth.config.profile} over {names} "
            "(SIGUSR1: power cycle, Ctrl-C: stop)",
            file=sys.stderr, flush=True,
        )
        await stop.wait()
    finally:
        if dashboard is not None:
            await dashboard.close()
        for t in reversed(started):
            await t.close()


def instance_store(store: str | None, index: int, count: int) -> str | None:
    """Instance ``index``'s store: ``run.db`` -> ``run-0.db``, ``run-1.db``...; ':memory:' stays."""
    if count == 1 or store == ":memory:":
        return store
    if store is None:
        from storage.sqlite import default_store_path

        store = str(default_store_path())
    path = Path(store)
    return str(path.with_name(f"{path.stem}-{index}{path.suffix}"))


async def serve_instances(args: argparse.Namespace, indices: list[int]) -> None:
    """Serve instances ``indices`` of ``--instances`` in this process, each on its own port."""
    from authenticator.frontdoor.cli import CliError
    from authenticator.frontdoor.cli.common import close_authenticator, make_authenticator

    auths, started = [], []
    try:
        for i in indices:
            auth = make_authenticator(
                argparse.Namespace(**{**vars(args), "store": instance_store(
                    args.store, i, args.instances)}),
                defaults=served_transports(args),
            )
            auths.append(auth)
            t = _udp(auth, args, args.udp_port + i, asyncio.Lock())
            try:
                await t.start()
            except OSError as e:
                raise CliError(
                    f"cannot serve instance {i} on UDP port {args.udp_port + i}: {e}"
                ) from e
            started.append(t)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, lambda: [t.power_cycle() for t in started])
        ports = ", ".join(str(args.udp_port + i) for i in indices)
        print(
            f"fido-emu: serving {len(indices)} instance(s) over udp on ports {ports}",
            file=sys.stderr, flush=True,
        )
        await stop.wait()
    finally:
        for t in reversed(started):
            await t.close()
        for auth in auths:
            close_authenticator(auth)


def _worker(args: argparse.Namespace, indices: list[int]) -> None:
    """Entry point of one ``--workers`` process (multiprocessing, spawn)."""
    from authenticator.frontdoor.cli import CliError

    # a spawned process starts with no logging set up: the same format as the parent's
    logging.basicConfig(
        level=logging.WARNING - 10 * args.verbose, format="%(asctime)s %(levelname)s %(message)s"
    )
    _quiet_logging(args)
    try:
        asyncio.run(serve_instances(args, indices))
    except CliError as e:
        print(f"fido-emu: error: {e}", file=sys.stderr)
        sys.exit(e.status)


def _quiet_logging(args: argparse.Namespace) -> None:
    if args.verbose == 0:
        logging.getLogger("fido_emu").setLevel(logging.INFO)
        logging.getLogger("transports").setLevel(logging.INFO)


def run_many(args: argparse.Namespace) -> int:
    """``--instances N [--workers K]``: instance i goes to worker i % K."""
    from authenticator.frontdoor.cli import CliError

    if args.transport != ["udp"]:
        raise CliError("--instances and --workers serve UDP only (--transport udp)")
    if args.presence in ("prompt", "web") or args.dashboard:
        raise CliError("--instances/--workers need --presence auto, deny or gpio and no dashboard")
    if args.instances < 1 or not 1 <= args.workers <= args.instances:
        raise CliError("need --instances >= 1 and 1 <= --workers <= --instances")
    slices = [list(range(w, args.instances, args.workers)) for w in range(args.workers)]
    if args.workers == 1:
        asyncio.run(serve_instances(args, slices[0]))
        return 0
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(args, s), daemon=True) for s in slices]
    for proc in procs:
        proc.start()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.pid is not None and proc.is_alive():
                os.kill(proc.pid, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
        signal.signal(signum, forward)
    status = 0
    for proc in procs:
        proc.join()
        status = status or (proc.exitcode or 0)
    if status:
        forward(signal.SIGTERM, None)  # one worker failed: take the others down too
    return 1 if status else 0


def run(args: argparse.Namespace) -> int:
    from authenticator.frontdoor.cli.common import close_authenticator, make_authenticator

    _quiet_logging(args)
    if args.udp_reply_port is not None or args.udp_reply_host is not None:
        print("fido-emu: note: --udp-reply-port/--udp-reply-host are ignored: "
              "UDP replies go to each sender", file=sys.stderr)
    if args.presence == "web" and not args.dashboard:
        from authenticator.frontdoor.cli import CliError

        raise CliError("--presence web needs --dashboard (the page answers presence)")
    if args.instances != 1 or args.workers != 1:
        return run_many(args)
    auth = make_authenticator(args, defaults=served_transports(args))
    try:
        asyncio.run(serve(args, auth))
    finally:
        close_authenticator(auth)
    print("fido-emu: stopped", file=sys.stderr)
    return 0
