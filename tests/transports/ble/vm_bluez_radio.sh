# Sourced by the guest scripts that need a radio (BLE and hybrid suites): two btvirt
# controllers (hci0, hci1) linked by an emulated radio and one bluetoothd. Defines
# adapter_up; the caller checks `adapter_up hci0 && adapter_up hci1` afterwards.
#
# bluetoothd settings for an LE-only peripheral + central pair (see README "BLE"):
# LE only, no address privacy (the central finds the same address after pairing),
# re-pairing with Just Works allowed, no BlueZ DIS (ours carries 0x2A28), and no EATT: with
# several ATT bearers BlueZ spreads fidoStatus notifications over them and fragments of one
# response can arrive out of order (seen here as INVALID_SEQ on a 1 KB PING).
cat > /tmp/main.conf <<'CONF'
[General]
ControllerMode = le
Privacy = off
JustWorksRepairing = always
DeviceID = false
[Policy]
AutoEnable = true
[GATT]
Channels = 1
CONF
adapter_up() { busctl --system get-property org.bluez /org/bluez/$1 org.bluez.Adapter1 Address >/dev/null 2>&1; }
# Under TCG (worse on a loaded host) btvirt can miss the kernel's 2 s HCI command timeout while
# a controller is set up ("hci0: Opcode 0x0c03 failed: -110"); that controller then never reaches
# bluetoothd. Start radio and daemon again when that happens.
for attempt in 1 2 3; do
  btvirt -L -l2 > /tmp/btvirt.log 2>&1 &
  BTVIRT=$!
  SECONDS=0
  until [ -e /sys/class/bluetooth/hci1 ] || [ $SECONDS -gt 30 ]; do sleep 0.2; done
  /usr/libexec/bluetooth/bluetoothd -n -d -f /tmp/main.conf > /tmp/bluetoothd.log 2>&1 &
  BTD=$!
  SECONDS=0
  until { adapter_up hci0 && adapter_up hci1; } || [ $SECONDS -gt 30 ]; do sleep 0.5; done
  adapter_up hci0 && adapter_up hci1 && break
  echo "attempt $attempt: controllers not both up; dmesg: $(dmesg | grep -i 'hci.*failed' | tail -2)"
  kill $BTD $BTVIRT; wait $BTD $BTVIRT 2>/dev/null; sleep 1
done
