"""``fido-emu tunnel-server`` and ``fido-emu hybrid scan``: the caBLE v2 roles from a shell.

``hybrid scan`` plays the phone: it takes the desktop's ``FIDO:/`` QR text (or an image
of the QR code), reaches the tunnel server the QR names (or ``--tunnel-url``), and answers
one makeCredential/getAssertion from the store. The BLE advert that proves proximity is
printed (hex) until the BLE peripheral transport can send it; desktops that insist on
seeing it over the air will wait for it.
"""

from __future__ import annotations

import argparse
import sys

from authenticator.cli.common import add_presence_option, add_store_options


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("tunnel-server", help="run a caBLE v2 WebSocket tunnel server")
    t.add_argument("--host", default="127.0.0.1")
    t.add_argument("--port", type=int, default=8080)
    t.add_argument("--tls-cert", help="PEM certificate (serve wss://); plain ws:// without it")
    t.add_argument("--tls-key", help="PEM private key for --tls-cert")
    t.set_defaults(func=run_tunnel_server)

    h = sub.add_parser("hybrid", help="hybrid (caBLE v2) authenticator role")
    verbs = h.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    s = verbs.add_parser("scan", help="act as the phone for a FIDO:/ QR code")
    s.add_argument("qr", nargs="?", help="the QR text, FIDO:/<digits>")
    s.add_argument("--qr-image", metavar="FILE", help="read the QR code from an image")
    s.add_argument("--tunnel-url", help="tunnel server base URL override, e.g. ws://127.0.0.1:8080")
    add_store_options(s)
    add_presence_option(s, "prompt")
    s.set_defaults(func=run_scan)


def run_tunnel_server(args: argparse.Namespace) -> int:
    import asyncio
    import ssl

    from authenticator.cli import CliError

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

    try:
        asyncio.run(serve(args.host, args.port, ssl=context, ready=ready))
    except OSError as e:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {e.strerror}") from e
    return 0


def _qr_from_image(path: str) -> str:
    from authenticator.cli import CliError

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


def run_scan(args: argparse.Namespace) -> int:
    import asyncio

    from authenticator.cli import CliError
    from authenticator.cli.common import make_authenticator

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
    auth = make_authenticator(args)

    def advertise(service_data: bytes) -> None:
        print(f"BLE advert (service data for UUID 0xFFF9): {service_data.hex()}", file=sys.stderr, flush=True)

    try:
        asyncio.run(run_authenticator(payload, auth, advertise, tunnel_url=args.tunnel_url))
    except (HybridError, OSError) as e:
        raise CliError(f"hybrid session failed: {e}") from e
    finally:
        auth.store.close()
    print("hybrid session finished", file=sys.stderr)
    return 0
