"""authenticatorMakeCredential (0x01), CTAP 2.1 §6.1.2, in the spec's order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from authenticator.core import attestation, auth_data
from authenticator.core.errors import ERR, CtapStatusError
from authenticator.core.extensions import REGISTRY, McExt
from authenticator.core.params import (
    client_data_hash,
    descriptors,
    encode_ordered,
    opt_bytes,
    opt_int,
    opt_map,
    options,
    req_list,
    req_map,
    req_str,
    rp_hash,
)
from authenticator.core.pin_state import PERM_MC, PinState

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device


def _entity(params: dict, key: int) -> dict:
    entity = req_map(params, key)
    for field in ("name", "displayName", "icon"):
        if field in entity and not isinstance(entity[field], str):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, f"{field} must be text")
    return entity


def choose_algorithm(dev: Device, params: dict) -> int:
    """The first pubKeyCredParams entry we support wins."""
    chosen = None
    for item in req_list(params, 0x04):
        if not isinstance(item, dict):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "pubKeyCredParams entry not a map")
        alg, kind = item.get("alg"), item.get("type")
        if alg is None or kind is None:
            raise CtapStatusError(ERR.MISSING_PARAMETER, "pubKeyCredParams entry incomplete")
        if not isinstance(alg, int) or isinstance(alg, bool) or not isinstance(kind, str):
            raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "pubKeyCredParams entry types")
        if chosen is None and kind == "public-key" and alg in dev.config.algorithms:
            chosen = alg
    if chosen is None:
        raise CtapStatusError(ERR.UNSUPPORTED_ALGORITHM)
    return chosen


async def handle(dev: Device, params: dict, call: Call) -> bytes:
    cfg = dev.config
    cdh = client_data_hash(params, 0x01)
    rp = _entity(params, 0x02)
    rp_id = req_str(rp, "id")
    call.rp_id = rp_id
    user = _entity(params, 0x03)
    user_id = user.get("id")
    if user_id is None:
        raise CtapStatusError(ERR.MISSING_PARAMETER, "user.id missing")
    if not isinstance(user_id, bytes):
        raise CtapStatusError(ERR.CBOR_UNEXPECTED_TYPE, "user.id must be bytes")
    if len(user_id) > 64:
        raise CtapStatusError(ERR.INVALID_LENGTH, "user.id longer than 64 bytes")
    alg = choose_algorithm(dev, params)
    exclude = descriptors(params, 0x05)
    ext_in = opt_map(params, 0x06) or {}
    opts = options(params, 0x07)
    pin_param = opt_bytes(params, 0x08)
    ep = opt_int(params, 0x0A)

    # 1. zero-length pinUvAuthParam: "touch to select" from pre-2.1 platforms
    if pin_param is not None and len(pin_param) == 0:
        await dev.require_presence(call, rp_id)
        raise CtapStatusError(ERR.PIN_INVALID if dev.pin.is_set else ERR.PIN_NOT_SET)
    protocol = PinState.protocol(params, 0x09) if pin_param is not None else None

    # 5. options
    rk = opts.get("rk", False)
    if "up" in opts and (opts["up"] is False or dev.config.make_cred_up_option_invalid):
        # CTAP 2.1 accepts up=true (the default) and refuses only up=false; CTAP 2.0 refused
        # the key altogether (--set make_cred_up_option_invalid=true, docs/conformance.md)
        raise CtapStatusError(ERR.INVALID_OPTION, "up is not allowed in makeCredential options")
    uv_requested = opts.get("uv", False) and pin_param is None
    if rk and not cfg.resident_keys:
        raise CtapStatusError(ERR.UNSUPPORTED_OPTION, "no discoverable credentials")
    if uv_requested and not cfg.builtin_uv:
        raise CtapStatusError(ERR.INVALID_OPTION, "no built-in user verification")
    if pin_param is None and not uv_requested:
        always_uv = dev.settings.always_uv
        needs_uv = always_uv or rk or not cfg.make_cred_uv_not_required
        if needs_uv and dev.pin.is_set:
            raise CtapStatusError(ERR.PUAT_REQUIRED)
        if always_uv and not dev.pin.is_set:
            if cfg.builtin_uv:
                uv_requested = True
            elif cfg.client_pin:
                raise CtapStatusError(ERR.PUAT_REQUIRED)
    # enterprise attestation
    if ep is not None:
        if not dev.settings.enterprise_attestation:
            raise CtapStatusError(ERR.INVALID_PARAMETER, "enterprise attestation disabled")
        if ep not in (1, 2):
            raise CtapStatusError(ERR.INVALID_OPTION, "enterpriseAttestation must be 1 or 2")

    # 11. user verification
    uv = False
    token = None
    if pin_param is not None:
        assert protocol is not None
        token = dev.pin.verify(protocol, pin_param, cdh, PERM_MC, rp_id)
        uv = token.user_verified
    elif uv_requested:
        await dev.builtin_uv(call, rp_id, user.get("name"))
        uv = True
    user_present = uv_requested  # built-in UV is a touch too

    rp_id_hash = rp_hash(rp_id)
    # 12. excludeList
    for cred_id in exclude:
        cred = dev.credentials.resolve(cred_id, rp_id_hash)
        if cred is None:
            continue
        if cred.cred_protect >= 3 and not uv:
            continue
        if not user_present:
            await dev.require_presence(call, rp_id, user.get("name"))
        raise CtapStatusError(ERR.CREDENTIAL_EXCLUDED)

    # extensions: validate and configure before creating anything
    x = McExt(dev=dev, call=call, rp_id=rp_id, rk=rk, uv=uv)
    active = []
    for name, value in ext_in.items():
        ext = REGISTRY.get(name) if isinstance(name, str) else None
        if ext is None or name not in cfg.extensions:
            continue  # unknown extensions are ignored, as the spec requires
        ext.configure(x, value)
        active.append((ext, value))

    if rk and dev.store.count_discoverable() >= cfg.max_discoverable:
        existing = [r for r in dev.store.credentials_for_rp(rp_id_hash) if r.user_id == user_id]
        if not existing:
            raise CtapStatusError(ERR.KEY_STORE_FULL)

    # 14. user presence
    if not user_present:
        if token is not None and token.user_present:
            token.user_present = False
        else:
            await dev.require_presence(call, rp_id, user.get("name"))
    if token is not None:
        dev.pin.token_used()

    cred, private, record, cose_key = dev.credentials.create(
        alg=alg,
        rp_id=rp_id,
        rp_id_hash=rp_id_hash,
        discoverable=rk,
        cred_protect=x.cred_protect,
        backup_eligible=cfg.backup_eligible,
        backup_state=cfg.backup_state,
        hmac_secret=x.hmac_secret,
        cred_blob=x.cred_blob,
        large_blob_key=x.large_blob_key,
        rp_name=rp.get("name"),
        user=user,
        now=dev.wall_clock(),
    )
    x.cred = cred
    cose = encode_ordered(cose_key)
    if record is not None:
        record.public_key = cose
        replaced = dev.store.put_credential(record)
        if replaced is not None:
            dev.credentials.forget(replaced.credential_id)
            dev.counters.forget(replaced.credential_id)
        elif rk and dev.store.count_discoverable() > cfg.max_discoverable:
            # another process filled the store since the check above: undo, so the cap
            # holds across processes (every credential kept saw a count within it)
            dev.store.delete_credential(record.credential_id)
            dev.credentials.forget(record.credential_id)
            raise CtapStatusError(ERR.KEY_STORE_FULL)

    ext_out = {}
    for ext, value in active:
        out = ext.at_make(x, value)
        if out is not None:
            ext_out[ext.name] = out

    flags = auth_data.flags(
        up=True, uv=uv, be=cred.backup_eligible, bs=cred.backup_state, at=True
    )
    data = auth_data.build(
        dev.faults.rp_id_hash(rp_id_hash),
        dev.faults.flags(flags),
        dev.initial_counter(cred),
        auth_data.attested_credential_data(cfg.aaguid, cred.id, cose),
        ext_out or None,
    )
    mode = cfg.attestation
    batch = attestation.load_batch(dev) if mode == "packed" or ep else None
    if ep and batch is not None and (ep == 2 or rp_id in dev.config.enterprise_rp_ids):
        mode = "packed"
    elif ep:
        ep = None  # not in the RP list: ordinary attestation, epAtt false
    fmt, att_stmt = attestation.statement(dev, cred, private, data, cdh, mode=mode, batch=batch)
    response = {0x01: fmt, 0x02: data, 0x03: att_stmt}
    if ep:
        response[0x04] = True
    response.update(x.unsigned)
    call.notes["credential_id"] = cred.id
    call.notes["user"] = user.get("name")
    call.notes["auth_data"] = data  # flags and counter for the log
    # attStmt ("alg", "sig", "x5c") is built in canonical order already
    return encode_ordered(dict(sorted(response.items())))
