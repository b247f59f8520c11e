"""Quickstart: a py_webauthn relying party (its defaults untouched) registers and signs in a
passkey made by the fido-emu CLI. No browser, no hardware.

    pip install 'webauthn>=2' && python tools/quickstart/python/quickstart.py

Options (all optional; the defaults are py_webauthn's own): --store PATH, --profile NAME,
--rk required|discouraged, --allow listed|empty, --alg=N, --attestation direct, --root PEM
(trust this root CA for packed x5c, from `fido-emu attestation init`). FIDO_EMU is the
command to run (default "fido-emu"). Prints one JSON line with what the RP verified; exits 1
if anything did not verify.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

import webauthn
from webauthn.helpers import options_to_json
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

ORIGIN = "http://localhost:8080"  # a secure context without TLS, as browsers allow
RP_ID = "localhost"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store")
    ap.add_argument("--profile")
    ap.add_argument("--rk", choices=["required", "discouraged"])
    ap.add_argument("--allow", choices=["listed", "empty"], default="listed")
    ap.add_argument("--alg", type=int)
    ap.add_argument("--attestation", choices=["direct"])
    ap.add_argument("--root")
    args = ap.parse_args()
    store = args.store or os.path.join(tempfile.mkdtemp(prefix="fido-emu-"), "quickstart.db")
    command = shlex.split(os.environ.get("FIDO_EMU", "fido-emu"))

    def fido_emu(verb: str, options_json: str) -> dict:
        argv = [*command, "webauthn", verb, "--origin", ORIGIN, "--store", store]
        if args.profile:
            argv += ["--profile", args.profile]
        run = subprocess.run(argv, input=options_json, capture_output=True, text=True)
        if run.returncode != 0:
            print(json.dumps({"ok": False, "step": verb, "error": run.stderr.strip(),
                              "status": run.returncode}))
            sys.exit(1)
        return json.loads(run.stdout)

    kw: dict = {}
    if args.rk:
        kw["authenticator_selection"] = AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement(args.rk),
            user_verification=UserVerificationRequirement.PREFERRED,
        )
    if args.alg:
        from webauthn.helpers.cose import COSEAlgorithmIdentifier

        try:
            kw["supported_pub_key_algs"] = [COSEAlgorithmIdentifier(args.alg)]
        except ValueError:
            print(json.dumps({"ok": False, "step": "options",
                              "error": f"py_webauthn does not support COSE algorithm {args.alg}"}))
            return 2
    if args.attestation:
        kw["attestation"] = AttestationConveyancePreference(args.attestation)
    reg_options = webauthn.generate_registration_options(
        rp_id=RP_ID, rp_name="fido-emu quickstart", user_name="alice", **kw
    )
    created = fido_emu("create", options_to_json(reg_options))
    roots = {}
    if args.root:
        from webauthn.helpers.structs import AttestationFormat

        with open(args.root, "rb") as f:
            roots = {AttestationFormat.PACKED: [f.read()]}
    reg = webauthn.verify_registration_response(
        credential=created, expected_challenge=reg_options.challenge, expected_rp_id=RP_ID,
        expected_origin=ORIGIN, pem_root_certs_bytes_by_fmt=roots or None,
        **({"supported_pub_key_algs": kw["supported_pub_key_algs"]} if args.alg else {}),
    )
    counter = reg.sign_count
    sign_ins = []
    for _ in range(2):
        allow = [] if args.allow == "empty" else [
            PublicKeyCredentialDescriptor(id=reg.credential_id)
        ]
        auth_options = webauthn.generate_authentication_options(
            rp_id=RP_ID, allow_credentials=allow
        )
        got = fido_emu("get", options_to_json(auth_options))
        auth = webauthn.verify_authentication_response(
            credential=got, expected_challenge=auth_options.challenge, expected_rp_id=RP_ID,
            expected_origin=ORIGIN, credential_public_key=reg.credential_public_key,
            credential_current_sign_count=counter,
        )
        counter = auth.new_sign_count
        sign_ins.append({"counter": counter, "userVerified": auth.user_verified})
    print(json.dumps({
        "ok": True,
        "fmt": str(getattr(reg.fmt, "value", reg.fmt)),
        "aaguid": reg.aaguid,
        "alg": created["response"]["publicKeyAlgorithm"],
        "deviceType": str(getattr(reg.credential_device_type, "value", reg.credential_device_type)),
        "backedUp": reg.credential_backed_up,
        "signIns": sign_ins,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
