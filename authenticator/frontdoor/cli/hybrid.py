"""``fido-emu tunnel-server`` and ``fido-emu hybrid scan``: the caBLE v2 roles from a shell.

``hybrid scan`` plays the phone: it takes the desktop's ``FIDO:/`` QR text (or an image
of the QR code), reaches the tunnel server the QR names (or ``--tunnel-url``), and answers
one makeCredential/getAssertion from the store. The BLE advert that proves proximity is
printed (hex), and with ``--ble`` also broadcast through BlueZ until the desktop's handshake
arrives (if BLE is unavailable, it is only printed, and desktops that need it over the air
will wait).

Linking ("linked devices"): ``hybrid scan --link`` lets the phone send linking info when the
QR code asks for it (its secrets stay sealed in the store); ``hybrid serve-linked`` then waits
on the tunnel server for linked desktops. On the desktop side ``hybrid qr --link
--save-pairing FILE`` keeps the phone's pairing (a secret: written 0600) and ``hybrid connect
--pairing FILE`` reaches the phone again without a QR code. Only our tunnel server can tell a
phone that a desktop is calling (``/cable/listen``); Google's uses FCM instead.
"""

from __future__ import annotations

import argparse
import os
import sys

from authenticator.frontdoor.cli.common import add_presence_option, add_store_options

#: ``fido-emu tunnel-server`` limit options: (option, type, default, help). Option names map
#: to ``TunnelServer`` keyword arguments (dashes to underscores).
TUNNEL_LIMITS: list[tuple[str, type, float, str]] = [
    ("--pair-timeout", float, 60, "seconds a phone (or linked desktop) may wait unpaired"),
    ("--idle-timeout", float, 300, "seconds a paired tunnel may stay silent"),
    ("--max-tunnels", int, 256, "open or waiting tunnels in all"),
    ("--max-tunnels-per-client", int, 16, "open or waiting tunnels per client address/user"),
    ("--max-contacts", int, 1024, "known linked-phone contact ids in all"),
    ("--max-contacts-per-client", int, 16, "contact ids per client address/user"),
    ("--contact-ttl", float, 86400, "seconds a contact id is kept after its phone stopped listening"),
]


def _positive(kind: type) -> object:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tunnel-server", help="run a caBLE v2 WebSocket tunnel server")
    t.add_argument("--host", default="127.0.0.1")
    t.add_argument("--port", type=int, default=8080)
    t.add_argument("--tls-cert", help="PEM certificate (serve wss://); plain ws:// without it")
    t.add_argument("--tls-key", help="PEM private key for --tls-cert")
    # Each limit's default lives in TunnelServer (the help repeats it; docs/tunnel-server.md).
    for option, kind, default, text in TUNNEL_LIMITS:
        t.add_argument(
            option, type=_positive(kind), metavar="N", help=f"{text} (default {default})"
        )
    t.set_defaults(func=run_tunnel_server)

    h = sub.add_parser("hybrid", help="hybrid (caBLE v2) authenticator role")
    verbs = h.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    s = verbs.add_parser("scan", help="act as the phone for a FIDO:/ QR code")
    s.add_argument("qr", nargs="?", help="the QR text, FIDO:/<digits>")
    s.add_argument("--qr-image", metavar="FILE", help="read the QR code from an image")
    s.add_argument("--tunnel-url", help="tunnel server base URL override, e.g. ws://127.0.0.1:8080")
    s.add_argument(
        "--ble", action="store_true",
        help="send the advert over BLE (BlueZ); falls back to printing it when BLE is unavailable",
    )  # fmt: skip
    s.add_argument("--adapter", help="BlueZ adapter for --ble, e.g. hci0 (default: the first)")
    s.add_argument(
        "--google-uuid", action="store_true",
        help="advertise under 0xFDE2 (older Chromium, iOS 16) instead of 0xFFF9",
    )  # fmt: skip
    s.add_argument("--link", action="store_true",
                   help="send linking info if the QR code asks for it (see serve-linked)")
    s.add_argument("--name", help="the name linked desktops show for this phone")
    add_store_options(s, creates=True)
    add_presence_option(s, "prompt")
    s.set_defaults(func=run_scan)

    w = verbs.add_parser("serve-linked", help="act as a linked phone: wait for linked desktops")
    w.add_argument("--tunnel-url", required=True,
                   help="our tunnel server's base URL, e.g. ws://127.0.0.1:8080")
    w.add_argument("--sessions", type=int, help="exit after this many sessions (default: never)")
    w.add_argument("--ble", action="store_true", help="send each advert over BLE, as scan --ble")
    w.add_argument("--adapter", help="BlueZ adapter for --ble")
    w.add_argument("--google-uuid", action="store_true", help="advertise under 0xFDE2")
    add_store_options(w, creates=True)
    add_presence_option(w, "prompt")
    w.set_defaults(func=run_serve_linked)  # fmt: skip

    q = verbs.add_parser(
        "qr", help="act as the desktop: show a FIDO:/ QR code, find the phone, register or sign in"
    )
    _add_desktop_options(
        q, "mc", "tunnel server base URL override, e.g. ws://127.0.0.1:8080"
    )
    q.add_argument("--link", action="store_true", help="ask the phone for linking info")
    q.add_argument("--save-pairing", metavar="FILE",
                   help="with --link: write the phone's pairing here (JSON, a secret, mode 0600)")
    q.set_defaults(func=run_qr)

    c = verbs.add_parser(
        "connect", help="act as the desktop: reach a linked phone again, without a QR code"
    )
    c.add_argument("--pairing", metavar="FILE", required=True, help="from qr --save-pairing")
    _add_desktop_options(c, "ga", "override the tunnel server URL stored in the pairing")
    c.set_defaults(func=run_connect)  # fmt: skip


def _add_desktop_options(p: argparse.ArgumentParser, request: str, tunnel_help: str) -> None:
    """The options `hybrid qr` and `hybrid connect` share (both play the desktop)."""
    p.add_argument("--request", choices=["mc", "ga"], default=request,
                   help=f"mc: register a discoverable passkey; ga: sign in with one (default {request})")
    p.add_argument("--rp-id", default="example.com", help="relying party id (default example.com)")
    p.add_argument("--origin", help="client origin (default https://<rp-id>)")
    p.add_argument("--tunnel-url", help=tunnel_help)
    p.add_argument("--ble", action="store_true",
                   help="find the phone's advert with a BLE scan (else: paste its hex on stdin)")
    p.add_argument("--adapter", help="BlueZ adapter for --ble, e.g. hci1 (default: the first)")
    p.add_argument("--timeout", type=float, default=120.0,
                   help="seconds to wait for the phone (default 120)")


def run_tunnel_server(args: argparse.Namespace) -> int:
    import asyncio
    import ssl

    from authenticator.frontdoor.cli import CliError

    try:
        from transports.hybrid.tunnel_server import serve
    except ImportError as e:
        raise CliError(f"the hybrid extra is not installed ({e.name}): pip install 'fido-emulator[hybrid]'") from e
    context = None
    if args.tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as e:
            raise CliError(f"cannot load TLS certificate: {e}") from e

    def ready(server) -> None:
        scheme = "wss" if context else "ws"
        print(f"tunnel server listening on {scheme}://{args.host}:{server.port}", file=sys.stderr, flush=True)

    names = [option[2:].replace("-", "_") for option, *_ in TUNNEL_LIMITS]
    limits = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        asyncio.run(serve(args.host, args.port, ssl=context, ready=ready, **limits))
    except OSError as e:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from e
    return 0


def _qr_from_image(path: str) -> str:
    from authenticator.frontdoor.cli import CliError

    try:
        import zxingcpp
        from PIL import Image
    except ImportError as e:
        raise CliError("reading QR images needs the hybrid extra (zxing-cpp, pillow)") from e
    try:
        results = zxingcpp.read_barcodes(Image.open(path))
    except OSError as e:
        raise CliError(f"cannot read image {path}: {e}") from e
    for r in results:
        if r.text.upper().startswith("FIDO:/"):
            return r.text
    raise CliError(f"no FIDO:/ QR code found in {path}")


# getInfo transports (0x09) of the phone role: reached over hybrid, a phone's own (internal)
# authenticator, as Android reports it; --set transports=... still wins
HYBRID_TRANSPORTS = {"transports": ("hybrid", "internal")}


def run_scan(args: argparse.Namespace) -> int:
    import asyncio

    from authenticator.frontdoor.cli import CliError
    from authenticator.frontdoor.cli.common import close_authenticator, make_authenticator

    text = _qr_from_image(args.qr_image) if args.qr_image else args.qr
    if not text:
        raise CliError("give the QR text (FIDO:/...) or --qr-image FILE")
    try:
        from transports.hybrid.authenticator_role import HybridError, run_authenticator
        from transports.hybrid.qr import QrError, QrPayload
    except ImportError as e:
        raise CliError(f"the hybrid extra is not installed ({e.name})") from e
    try:
        payload = QrPayload.from_url(text.strip())
    except (QrError, ValueError) as e:
        raise CliError(f"not a valid hybrid QR code: {e}") from e
    auth = make_authenticator(args, defaults=HYBRID_TRANSPORTS)
    linking = None
    if args.link:
        from transports.hybrid.linking import LinkStore

        linking = LinkStore(auth).load(name=args.name)
    try:
        asyncio.run(_scan_session(args, payload, auth, run_authenticator, linking))
    except (HybridError, OSError) as e:
        raise CliError(f"hybrid session failed: {e}") from e
    finally:
        close_authenticator(auth)
    print("hybrid session finished", file=sys.stderr)
    return 0


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


async def _open_advertiser(args: argparse.Namespace):
    """A started HybridAdvertiser, or None (with the reason on stderr) when BLE is unavailable."""
    try:
        from transports.hybrid.advert import SERVICE_UUID_FIDO, SERVICE_UUID_GOOGLE
        from transports.hybrid.ble_advertiser import HybridAdvertiser
    except ImportError as e:
        _say(f"BLE unavailable ({e.name} not installed); printing the advert instead")
        return None
    uuid = SERVICE_UUID_GOOGLE if args.google_uuid else SERVICE_UUID_FIDO
    advertiser = HybridAdvertiser(adapter=args.adapter, service_uuid=uuid, adapter_timeout=10.0)
    try:
        await advertiser.open()
    except Exception as e:  # no system bus, no bluetoothd, no such adapter
        _say(f"BLE unavailable ({e}); printing the advert instead")
        return None
    return advertiser


def _advertise_with(args: argparse.Namespace, advertiser):
    uuid = "0xFDE2" if args.google_uuid else "0xFFF9"

    def advertise(service_data: bytes):
        _say(f"BLE advert (service data for UUID {uuid}): {service_data.hex()}")
        if advertiser is None:
            return None
        _say(f"advertising over BLE on {advertiser.adapter_path} until the desktop connects")
        return advertiser.advertising(service_data)

    return advertise


async def _scan_session(
    args: argparse.Namespace, payload, auth, run_authenticator, linking=None
) -> None:
    advertiser = await _open_advertiser(args) if args.ble else None
    try:
        await run_authenticator(
            payload, auth, _advertise_with(args, advertiser), tunnel_url=args.tunnel_url,
            linking=linking,
        )  # fmt: skip
    finally:
        if advertiser is not None:
            await advertiser.close()


def run_serve_linked(args: argparse.Namespace) -> int:
    import asyncio

    from authenticator.frontdoor.cli import CliError
    from authenticator.frontdoor.cli.common import close_authenticator, make_authenticator

    try:
        from transports.hybrid.authenticator_role import serve_linked
        from transports.hybrid.linking import LinkStore
    except ImportError as e:
        raise CliError(f"the hybrid extra is not installed ({e.name})") from e
    auth = make_authenticator(args, defaults=HYBRID_TRANSPORTS)
    try:
        linking = LinkStore(auth).load(create=False)
        if linking is None or not linking.pairing_ids:
            raise CliError("no linked desktops in this store: run 'hybrid scan --link' first")

        async def main() -> int:
            advertiser = await _open_advertiser(args) if args.ble else None
            try:
                return await serve_linked(
                    linking, auth, _advertise_with(args, advertiser), tunnel_url=args.tunnel_url,
                    sessions=args.sessions,
                    on_listening=lambda: _say("waiting for linked desktops"),
                )  # fmt: skip
            finally:
                if advertiser is not None:
                    await advertiser.close()

        served = asyncio.run(main())
    except OSError as e:
        raise CliError(f"cannot reach the tunnel server: {e}") from e
    finally:
        close_authenticator(auth)
    _say(f"served {served} linked session(s)")
    return 0


def _show_qr(text: str) -> None:
    """The QR text on stdout (for scripts); the code itself on stderr when segno is installed."""
    print(text, flush=True)
    try:
        import segno
    except ImportError:
        return
    segno.make(text, error="l").terminal(out=sys.stderr, compact=True)


async def _stdin_adverts():
    """Adverts pasted on stdin: hex, or a whole "BLE advert (...): <hex>" line from hybrid scan."""
    import asyncio

    while line := await asyncio.to_thread(sys.stdin.readline):
        try:
            yield bytes.fromhex(line.strip().rsplit(" ", 1)[-1])
        except ValueError:
            _say("not an advert (hex expected); ignored")


def run_qr(args: argparse.Namespace) -> int:
    import json

    from authenticator.frontdoor.cli import CliError

    try:
        from transports.hybrid.client_role import (
            HybridClient,
            HybridClientError,
            HybridCtapDevice,
        )
    except ImportError as e:
        raise CliError(f"the hybrid extra is not installed ({e.name})") from e
    adverts = _advert_source(args)
    if args.save_pairing and not args.link:
        raise CliError("--save-pairing needs --link")
    client = HybridClient(tunnel_url=args.tunnel_url, request_type=args.request, link=args.link)
    _show_qr(client.qr_url)
    source = "its BLE advert" if args.ble else "its advert (hex) on stdin"
    _say(f"scan this with the phone; waiting for {source}")
    try:
        device = HybridCtapDevice.open(client, adverts, timeout=args.timeout)
    except (HybridClientError, OSError, TimeoutError) as e:
        raise CliError(f"could not reach the phone: {e!r}") from e
    result = _ceremony(args, device)
    if args.save_pairing:
        if client.pairing is None:
            _say("the phone sent no linking info; no pairing saved")
        else:
            _save_pairing(args.save_pairing, client.pairing.to_json())
            _say(f"pairing with {client.pairing.name!r} saved to {args.save_pairing}")
    print(json.dumps(result), flush=True)
    return 0


def _advert_source(args: argparse.Namespace):
    from authenticator.frontdoor.cli import CliError

    if not args.ble:
        return _stdin_adverts
    try:
        from transports.hybrid.ble_scanner import scan_adverts
    except ImportError as e:
        raise CliError(f"--ble needs the ble extra ({e.name})") from e
    return lambda: scan_adverts(args.adapter)


def _save_pairing(path: str, data: dict) -> None:
    """Written 0600 from the start: it holds the link secret."""
    import json

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")


def run_connect(args: argparse.Namespace) -> int:
    import json

    from authenticator.frontdoor.cli import CliError

    try:
        from transports.hybrid.client_role import HybridClientError, HybridCtapDevice
        from transports.hybrid.linking import LinkingError, Pairing
    except ImportError as e:
        raise CliError(f"the hybrid extra is not installed ({e.name})") from e
    try:
        with open(args.pairing) as f:
            pairing = Pairing.from_json(json.load(f))
    except (OSError, ValueError, LinkingError) as e:
        raise CliError(f"cannot read the pairing {args.pairing}: {e}") from e
    source = "its BLE advert" if args.ble else "its advert (hex) on stdin"
    _say(f"calling {pairing.name!r}; waiting for {source}")
    try:
        device = HybridCtapDevice.open_linked(
            pairing, _advert_source(args), request_type=args.request,
            tunnel_url=args.tunnel_url, timeout=args.timeout,
        )  # fmt: skip
    except (HybridClientError, OSError, TimeoutError) as e:
        raise CliError(f"could not reach the phone: {e!r}") from e
    print(json.dumps(_ceremony(args, device)), flush=True)
    return 0


def _ceremony(args: argparse.Namespace, device) -> dict:
    """One makeCredential or getAssertion through Fido2Client; closes the device."""
    from authenticator.frontdoor.cli import CliError

    try:
        from fido2.client import ClientError, DefaultClientDataCollector, Fido2Client
        from fido2.ctap import CtapError
        from fido2.server import Fido2Server
        from fido2.utils import websafe_encode
        from fido2.webauthn import (
            PublicKeyCredentialRpEntity,
            PublicKeyCredentialUserEntity,
            ResidentKeyRequirement,
            UserVerificationRequirement,
        )
    except ImportError as e:
        device.close()
        raise CliError(f"the hybrid extra is not installed ({e.name})") from e
    rp = Fido2Server(PublicKeyCredentialRpEntity(id=args.rp_id, name=args.rp_id))
    collector = DefaultClientDataCollector(args.origin or f"https://{args.rp_id}")
    try:
        fido = Fido2Client(device, collector)
        if args.request == "mc":
            user = PublicKeyCredentialUserEntity(id=os.urandom(16), name="user", display_name="User")
            options, state = rp.register_begin(
                user, resident_key_requirement=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.PREFERRED,
            )  # fmt: skip
            auth_data = rp.register_complete(state, fido.make_credential(options.public_key))
            cred = auth_data.credential_data
            assert cred is not None
            result = {
                "credentialId": websafe_encode(cred.credential_id),
                "aaguid": str(cred.aaguid),
                "userVerified": auth_data.is_user_verified(),
                "backupEligible": auth_data.is_backup_eligible(),
                "verified": True,
            }
        else:
            options, _state = rp.authenticate_begin(
                user_verification=UserVerificationRequirement.PREFERRED
            )
            response = fido.get_assertion(options.public_key).get_response(0)
            user_handle = response.response.user_handle
            result = {
                "credentialId": websafe_encode(response.raw_id),
                "userHandle": websafe_encode(user_handle) if user_handle else None,
                "verified": False,  # the public key is the RP's; this shell has none to check
            }
    except (ClientError, CtapError, ValueError) as e:
        raise CliError(f"{args.request} over hybrid failed: {e}") from e
    finally:
        device.close()
    return result
