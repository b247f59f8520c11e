"""Front doors: what people run — the ``fido-emu`` CLI, the dashboard, the HTTP API and
the wiring that builds an Authenticator from options and starts transports; also the
attestation CA and metadata writers (they write files).

May import: the core, transports, storage engines and the RP-testing helpers. Nothing
below imports this package (import-linter contracts in pyproject.toml).
"""
