"""One store, two front doors: a passkey made in the page signs in through
``fido-emu webauthn get`` and one made by ``fido-emu webauthn create`` signs in in the page;
the verifier sees counters strictly increasing across both."""

from __future__ import annotations

import json

from swa_rp import cli, post


def cli_ceremony(verb: str, server, store_path, options: dict) -> dict:
    run = cli("webauthn", verb, "--store", str(store_path), "--profile", "security-key",
              "--origin", server.url, input=json.dumps(options))
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_page_credential_signs_in_through_the_cli_and_back(
    fido_page, fido_bridge, swa_server, store_path
):
    page = fido_page
    page.goto(swa_server.url + "/")
    assert page.evaluate("rp.register('frank')").get("verified")
    counts = [page.evaluate("rp.login('frank')")["signCount"]]

    options = post(swa_server.url + "/auth/options", {"username": "frank"})
    response = cli_ceremony("get", swa_server, store_path, options)
    verdict = post(swa_server.url + "/auth/verify", {"response": response})
    assert verdict.get("verified") and verdict["username"] == "frank", verdict
    counts.append(verdict["signCount"])

    again = page.evaluate("rp.login('')")
    assert again.get("verified"), again
    counts.append(again["signCount"])
    assert counts == sorted(set(counts)) and counts[0] > 0, counts


def test_cli_credential_signs_in_in_the_page(fido_page, fido_bridge, swa_server, store_path):
    options = post(swa_server.url + "/reg/options", {"username": "grace"})
    created = cli_ceremony("create", swa_server, store_path, options)
    reg = post(swa_server.url + "/reg/verify", {"username": "grace", "response": created})
    assert reg.get("verified") and reg["fmt"] == "packed", reg

    page = fido_page
    page.goto(swa_server.url + "/")
    counts = [reg["signCount"]]
    for _ in range(2):
        got = page.evaluate("rp.login('')")
        assert got.get("verified") and got["username"] == "grace", got
        counts.append(got["signCount"])
    options = post(swa_server.url + "/auth/options", {"username": "grace"})
    verdict = post(swa_server.url + "/auth/verify",
                   {"response": cli_ceremony("get", swa_server, store_path, options)})
    assert verdict.get("verified"), verdict
    counts.append(verdict["signCount"])
    assert counts == sorted(set(counts)), counts
