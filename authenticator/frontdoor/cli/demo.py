"""``fido-emu demo``: register a passkey and sign in against a real verifier, no hardware.

The relying party is python-fido2's ``Fido2Server``; the browser is python-fido2's
``Fido2Client``; the authenticator is ours, with a throwaway store unless --store is given.
"""

from __future__ import annotations

import argparse

from authenticator.frontdoor.cli.common import add_store_options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="register and sign in with a passkey against Fido2Server")
    add_store_options(
        p, creates=True,
        store_help="credential store (SQLite file); default: a throwaway in-memory store",
    )
    p.set_defaults(func=run, store=None)


def _flags(auth_data) -> str:
    names = [("UP", 0x01), ("UV", 0x04), ("BE", 0x08), ("BS", 0x10), ("AT", 0x40), ("ED", 0x80)]
    return " ".join(f"{n}={1 if auth_data.flags & bit else 0}" for n, bit in names)


def run(args: argparse.Namespace) -> int:
    from fido2.server import Fido2Server
    from fido2.webauthn import PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity

    from authenticator.frontdoor.cli.common import close_authenticator, make_authenticator
    from authenticator.rp_testing.webauthn import WebAuthnClient
    from transports.inprocess import InProcessDevice

    if args.store is None:
        args.store = ":memory:"
    args.presence, args.uv = "auto", "approve"
    auth = make_authenticator(args)
    device = InProcessDevice(auth)
    origin = "https://demo.fido-emu.test"
    rp = PublicKeyCredentialRpEntity(name="fido-emu demo RP", id="demo.fido-emu.test")
    server = Fido2Server(rp, attestation="direct")
    client = WebAuthnClient(device, origin, transports=list(auth.config.transports))
    print(f"Authenticator: profile {auth.config.profile}, AAGUID {auth.config.aaguid.hex()}")
    print(f"Relying party: {rp.id} (python-fido2 Fido2Server), origin {origin}\n")

    user = PublicKeyCredentialUserEntity(id=b"demo-user-1", name="alice", display_name="Alice")
    options, state = server.register_begin(
        user, resident_key_requirement="required", user_verification="preferred"
    )
    print("1. Register a discoverable passkey (residentKey=required, userVerification=preferred)")
    reg = client.create(dict(options))
    from fido2.webauthn import RegistrationResponse

    auth_data = server.register_complete(state, RegistrationResponse.from_dict(reg))
    att = RegistrationResponse.from_dict(reg).response.attestation_object
    cred = auth_data.credential_data
    print(f"   credential id   {reg['id'][:32]}...")
    print(f"   attestation     {att.fmt} ({'self' if 'x5c' not in att.att_stmt else 'x5c'}), "
          "verified by Fido2Server")
    print(f"   AAGUID          {cred.aaguid}")
    print(f"   algorithm       {cred.public_key[3]}")
    print(f"   flags           {_flags(auth_data)}")
    print(f"   counter         {auth_data.counter}\n")

    credentials = [cred]
    from fido2.webauthn import AuthenticationResponse

    for i, (label, allow) in enumerate(
        [("discoverable sign-in (empty allowCredentials)", []), ("re-authentication (allowCredentials)", credentials)],
        start=2,
    ):
        options, state = server.authenticate_begin(allow or None, user_verification="preferred")
        print(f"{i}. Sign in: {label}")
        resp = client.get(dict(options))
        parsed = AuthenticationResponse.from_dict(resp)
        server.authenticate_complete(state, credentials, parsed)
        data = parsed.response.authenticator_data
        handle = parsed.response.user_handle
        print("   signature       verified by Fido2Server")
        print(f"   user handle     {handle.decode() if handle else '-'}")
        print(f"   flags           {_flags(data)}")
        print(f"   counter         {data.counter}\n")
    print("Done: a passkey registered and used twice, every response verified by a real RP library.")
    device.close()
    close_authenticator(auth)
    return 0
