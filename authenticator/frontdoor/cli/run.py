"""``fido-emu run`` and ``fido-emu gadget``: serve one authenticator over real transports.

Several ``--transport`` options share one authenticator (one command at a time across
them). SIGINT/SIGTERM shut down cleanly (the UHID device is destroyed, the gadget unbound and
removed, as when a key is unplugged); SIGUSR1 simulates unplug/replug (power cycle). Each CTAP command is logged
as command, rpId, status and duration, never a secret.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from authenticator.frontdoor.cli.common import add_presence_option, add_store_options
from authenticator.frontdoor.dashboard import add_dashboard_options

log = logging.getLogger("fido_emu")
TRANSPORTS = ("udp", "uhid", "gadget", "ble")


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
    p.add_argument("--udp-reply-port", type=int, default=7112, help="UDP reply port (default 7112)")
    p.add_argument("--udp-reply-host", default="127.0.0.1")
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
    add_store_options(p)
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


async def serve(args: argparse.Namespace, auth) -> None:
    from authenticator.frontdoor.cli import CliError

    lock = asyncio.Lock()
    opts = dict(lock=lock, u2f=auth.config.u2f)
    transports = []
    for name in dict.fromkeys(args.transport):
        if name == "udp":
            from transports.udp import UdpTransport

            transports.append(UdpTransport(
                auth, listen=(args.udp_host, args.udp_port),
                reply_to=(args.udp_reply_host, args.udp_reply_port), transport="udp", **opts,
            ))
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
            for t in started:
                t.engine.power_cycle()  # drops channels, then the core's volatile state

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


def run(args: argparse.Namespace) -> int:
    from authenticator.frontdoor.cli.common import make_authenticator

    if args.verbose == 0:
        logging.getLogger("fido_emu").setLevel(logging.INFO)
        logging.getLogger("transports").setLevel(logging.INFO)
    if args.presence == "web" and not args.dashboard:
        from authenticator.frontdoor.cli import CliError

        raise CliError("--presence web needs --dashboard (the page answers presence)")
    auth = make_authenticator(args)
    try:
        asyncio.run(serve(args, auth))
    finally:
        auth.store.close()
    print("fido-emu: stopped", file=sys.stderr)
    return 0
