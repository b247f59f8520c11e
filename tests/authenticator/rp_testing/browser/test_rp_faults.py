"""An RP developer's negative tests, written only with the fido_emu pytest plugin's fixtures
and the fault API: the demo RP (python-fido2 Fido2Server underneath) must reject each fault."""

from __future__ import annotations

import pytest

from authenticator.rp_testing.webauthn import WebAuthnError
from tests.authenticator.rp_testing.browser.browser_support import load_rp_demo, post

pytestmark = pytest.mark.fido_profile("platform")  # built-in UV, counters per credential


@pytest.fixture
def rp():
    url, stop = load_rp_demo().start(port=0)
    yield url
    stop()


def register(client, url: str) -> None:
    _, begin = post(url, "/register/begin", {"username": "alice"})
    credential = client.create({"publicKey": begin["publicKey"]})
    status, result = post(url, "/register/complete", {"flow": begin["flow"], "credential": credential})
    assert status == 200 and result["ok"], result


def sign_in(client, url: str, **options) -> tuple[int, dict]:
    _, begin = post(url, "/authenticate/begin", {"username": "", **options})
    credential = client.get({"publicKey": begin["publicKey"]})
    return post(url, "/authenticate/complete", {"flow": begin["flow"], "credential": credential})


@pytest.mark.parametrize(
    "fault,options,reason",
    [
        ("counter-regress", {}, "signature counter regressed"),
        ("counter-zero", {}, "signature counter regressed"),
        ("counter-reset", {}, "signature counter regressed"),
        # python-fido2's Fido2Server (inside the demo RP) names the field it rejected
        ("bad-signature", {}, "assertion rejected: Invalid signature."),
        ("wrong-rpid-hash", {}, "assertion rejected: Wrong RP ID hash in response."),
        ("up-0", {}, "assertion rejected: User Present flag not set."),
        ("uv-0", {"userVerification": "required"}, "assertion rejected: User verification required"),
        ("bs-without-be", {}, "BS set without BE"),
    ],
)
def test_rp_rejects_each_fault(fido_authenticator, webauthn_client, rp, fault, options, reason):
    client = webauthn_client(rp)
    register(client, rp)
    for _ in range(3):  # a healthy history first: the counter is well above 1
        status, result = sign_in(client, rp, **options)
        assert status == 200 and result["ok"], result
    fido_authenticator.faults.arm(fault)
    status, result = sign_in(client, rp, **options)
    assert status == 400 and reason in result["error"], result
    fido_authenticator.faults.clear()
    status, result = sign_in(client, rp, **options)
    assert status == 200 and result["ok"], result  # nothing else changed


def test_injected_ctap_error_reaches_the_client(fido_authenticator, webauthn_client, rp):
    client = webauthn_client(rp)
    register(client, rp)
    fido_authenticator.faults.arm("error=OPERATION_DENIED")
    with pytest.raises(WebAuthnError, match="NotAllowedError"):
        sign_in(client, rp)
    status, result = sign_in(client, rp)  # one command only
    assert status == 200 and result["ok"], result
