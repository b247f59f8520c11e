"""Schemathesis drives ``fido-emu serve`` from its own ``/openapi.json``: generated requests
for every operation, and no answer may be a server error or disagree with the document."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from authenticator.frontdoor.api.openapi import document  # noqa: E402

ROOT = Path(__file__).resolve().parents[4]
schema = schemathesis.openapi.from_dict(document())


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serve")
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authenticator.frontdoor.cli", "serve", "--port", "0",
         "--store", ":memory:"], stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stderr is not None
    line = proc.stderr.readline()
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    url = line.split("serving on ")[1].split()[0]
    yield url.split("?token=")[0].rstrip("/"), url.split("?token=")[1]
    proc.terminate()
    proc.wait(timeout=30)
    time.sleep(0.1)
    log = "".join(lines)
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_the_document(case, served):
    base_url, token = served
    response = case.call(base_url=base_url, headers={"X-Fido-Emu-Token": token}, timeout=30)
    assert response.status_code < 500, (case.method, case.path, response.text[:300])
    content_type = response.headers["content-type"]
    content_type = content_type[0] if isinstance(content_type, list) else content_type
    assert content_type.startswith("application/json")
    if response.status_code in (200, 400) and case.path != "/openapi.json":
        body = response.json()
        assert "value" in body
        if response.status_code == 400:
            assert {"error", "message"} <= set(body["value"]) and "\n" not in body["value"]["message"]
