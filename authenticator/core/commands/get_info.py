"""authenticatorGetInfo (0x04): versions, options and limits from the live config and state."""

from __future__ import annotations

from typing import TYPE_CHECKING

from authenticator.core.extensions import REGISTRY
from authenticator.core.params import encode_ordered

if TYPE_CHECKING:
    from authenticator.core.device import Call, Device


def info_map(dev: Device) -> dict:
    """The getInfo response, computed from the live configuration and state."""
    cfg, pin = dev.config, dev.pin
    # FIDO_2_1_PRE + credentialMgmtPreview: how 2.1-PRE clients (python-fido2 0.8-0.9, older
    # libfido2) find credentialManagement's prototype command 0x41, as on YubiKey 5.4+
    versions = ["FIDO_2_0", "FIDO_2_1_PRE", "FIDO_2_1"]
    if cfg.u2f:
        versions.insert(0, "U2F_V2")
    options: dict[str, bool] = {
        "rk": cfg.resident_keys,
        "up": True,
        "plat": cfg.platform_attachment,
        "credMgmt": cfg.resident_keys,
        "credentialMgmtPreview": cfg.resident_keys,
        "authnrCfg": True,
        "largeBlobs": cfg.resident_keys,
        "makeCredUvNotRqd": cfg.make_cred_uv_not_required,
        "alwaysUv": dev.settings.always_uv,
        "setMinPINLength": cfg.client_pin,
        "pinUvAuthToken": True,
    }
    if cfg.client_pin:
        options["clientPin"] = pin.is_set
    if cfg.builtin_uv:
        options["uv"] = True
    if dev.settings.enterprise_attestation or cfg.extra.get("enterprise_capable", True):
        options["ep"] = dev.settings.enterprise_attestation
    extensions = [name for name in cfg.extensions if name in REGISTRY]
    result = {
        0x01: versions,
        0x02: extensions,
        0x03: cfg.aaguid,
        0x04: options,
        0x05: cfg.max_msg_size,
        0x06: [2, 1],
        0x07: cfg.max_cred_count_in_list,
        0x08: cfg.max_cred_id_length,
        0x09: list(cfg.transports),
        0x0A: [{"alg": alg, "type": "public-key"} for alg in cfg.algorithms],
        0x0B: cfg.max_large_blob_array,
        0x0C: dev.settings.force_change_pin,
        0x0D: dev.settings.min_pin_length,
        0x0E: cfg.firmware_version,
        0x0F: cfg.max_cred_blob_length,
        0x10: cfg.max_rpids_for_set_min_pin,
        0x14: max(0, cfg.max_discoverable - dev.store.count_discoverable()),
    }
    if cfg.builtin_uv:
        result[0x11] = 1  # preferredPlatformUvAttempts
        result[0x12] = 0x00000002  # uvModality: fingerprint
    return result


async def handle(dev: Device, params: dict, call: Call) -> bytes:
    """Encoded without cbor2's canonical mode (4x the cost: every WebAuthn ceremony of
    our JSON client and of browsers starts with a getInfo): the maps are put in canonical
    order here, integer keys ascending and the options' ASCII names length-first."""
    m = info_map(dev)
    m[0x04] = dict(sorted(m[0x04].items(), key=_text_key_order))
    return encode_ordered(dict(sorted(m.items())))


def _text_key_order(item: tuple[str, object]) -> tuple[int, str]:
    return len(item[0]), item[0]
