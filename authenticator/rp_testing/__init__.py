"""Helpers for RP developers: the WebAuthn L3 JSON client, the CDP and page bridges for
browsers, and the pytest plugin.

May import: the core, transports (in-process device) and storage. Never the front doors.
"""
