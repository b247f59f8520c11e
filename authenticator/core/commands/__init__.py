"""One module per CTAP command, named after it (getInfo -> get_info.py, U2F -> ctap1.py).

Each exposes ``async def handle(dev, params, call)``: it receives the
:class:`~authenticator.core.device.Device` and the :class:`~authenticator.core.device.Call`
as parameters and never imports the dispatcher. May import the core's model modules and
extensions, nothing above them.
"""
