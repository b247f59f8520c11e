"""Issue 13 D4: a counter at 2^32-1 never wraps to 0 in authData; the credential stops."""

from __future__ import annotations

import struct

import pytest
from fido2.ctap import CtapError

from tests.conftest import RP


def _make(ctap, rk: bool) -> bytes:
    att = ctap.make_credential(
        b"\x01" * 32,
        {"id": RP.id, "name": RP.name},
        {"id": b"user-1", "name": "alice"},
        [{"type": "public-key", "alg": -7}],
        options={"rk": rk},
    )
    return att.auth_data.credential_data.credential_id


def _counter(ctap, cred_id: bytes) -> int:
    res = ctap.get_assertion(RP.id, b"\x02" * 32, [{"type": "public-key", "id": cred_id}])
    return struct.unpack(">I", res.auth_data[33:37])[0]


@pytest.mark.parametrize("rk", [False, True])
def test_D4_counter_at_max_stops_instead_of_wrapping(auth, ctap, restart, rk: bool) -> None:
    cred_id = _make(ctap, rk)
    auth.counters.set(cred_id, 2**32 - 2)
    assert _counter(ctap, cred_id) == 2**32 - 1
    with pytest.raises(CtapError) as err:
        _counter(ctap, cred_id)
    assert err.value.code == CtapError.ERR.LIMIT_EXCEEDED
    # and after a restart the exhausted counter still does not wrap
    from fido2.ctap2 import Ctap2

    from transports.inprocess import InProcessDevice

    again = Ctap2(InProcessDevice(restart(auth)))
    with pytest.raises(CtapError) as err:
        _counter(again, cred_id)
    assert err.value.code == CtapError.ERR.LIMIT_EXCEEDED


def test_D4_counter_values_outside_32_bits_are_refused(auth) -> None:
    with pytest.raises(ValueError, match="32 bits"):
        auth.counters.set(b"x" * 16, 2**63)
    with pytest.raises(ValueError):
        auth.counters.set(b"x" * 16, -1)
