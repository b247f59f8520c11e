"""Transports move bytes between a host and the core; they never parse CBOR.

``ctaphid`` is the I/O-free CTAPHID engine; ``udp``, ``uhid`` and ``gadget`` feed it 64-byte
reports from a UDP socket, ``/dev/uhid`` and ``/dev/hidgN``; ``ble`` and ``hybrid`` frame CTAP
for Bluetooth and caBLE. Submodules are imported on demand so optional dependencies stay optional.

May import: ``authenticator.core.ports`` (CommandContext, CtapHandler, KeepaliveStatus) and
nothing else of the core, never a front door or the RP-testing helpers (import-linter
contracts in pyproject.toml).
"""
