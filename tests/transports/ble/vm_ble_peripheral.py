"""Guest side of test_ble_vm.py: the emulator as a FIDO BLE peripheral on one btvirt controller.

Presence waits 0.3 s (so the client sees KEEPALIVE UPNEEDED), except for rpId
"cancel.example", where it waits until the client's CANCEL ends the wait.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from authenticator.core import Authenticator
from authenticator.core.config import Config
from authenticator.core.presence import AutoApprove, PresenceRequest
from storage.memory import MemoryStore
from transports.ble.peripheral import BlePeripheralTransport


class SlowPresence(AutoApprove):
    def immediate(self, request: PresenceRequest) -> bool | None:
        return None  # always go through the wait (and its keepalives)

    async def request_presence(self, request: PresenceRequest) -> bool:
        self.requests.append(request)
        if request.rp_id == "cancel.example":
            await asyncio.Event().wait()  # only CANCEL (or the timeout) ends this
        await asyncio.sleep(0.3)
        return True


async def main(adapter: str) -> None:
    auth = Authenticator(Config(), MemoryStore(), presence=SlowPresence())
    transport = BlePeripheralTransport(auth, adapter=adapter, name="fido-emu-vm")
    await transport.start()
    print("PERIPHERAL READY", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await transport.close()


if __name__ == "__main__":
    logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("dbus_fast").setLevel(logging.INFO)
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "hci0"))
