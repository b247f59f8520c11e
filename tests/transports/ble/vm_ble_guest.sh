#!/bin/bash
# Runs inside the qemu guest (tools/vm): two btvirt controllers linked by an emulated radio,
# one bluetoothd, the emulator as a FIDO BLE peripheral on hci0 and a bleak central with
# python-fido2 on hci1. Prints "CHECK ok <name>" per passed check.
set -u
PY=${FIDO_EMU_PYTHON:-.venv/bin/python}
OUT=${FIDO_EMU_VM_OUT:-/tmp}
HERE=tests/transports/ble
fail() {
  echo "CHECK FAIL $*"
  echo "--- peripheral log (tail) ---"; tail -n 60 $OUT/peripheral.log
  echo "--- bluetoothd log (tail) ---"; tail -n 80 /tmp/bluetoothd.log
  cp /tmp/bluetoothd.log "$OUT"/ 2>/dev/null
  exit 1
}
ok() { echo "CHECK ok $*"; }
t0=$(date +%s.%N)
since() { echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo "?"; }

. tests/transports/ble/vm_bluez_radio.sh
{ adapter_up hci0 && adapter_up hci1; } || fail "bluetoothd does not have hci0 and hci1"
ok "btvirt + bluetoothd up ($(since) s)"

PLOG=$OUT/peripheral.log
$PY $HERE/vm_ble_peripheral.py hci0 > $PLOG 2>&1 &
PER=$!
SECONDS=0
until grep -q "PERIPHERAL READY" $PLOG; do
  [ $SECONDS -gt 300 ] && fail "peripheral did not start within 300 s"
  kill -0 $PER 2>/dev/null || fail "peripheral exited"
  sleep 0.5
done
ok "peripheral advertising on hci0 ($(since) s)"

$PY $HERE/vm_ble_central.py hci1 || fail "central checks"
paired=$(busctl --system get-property org.bluez \
  "$(busctl --system tree org.bluez | grep -o '/org/bluez/hci1/dev_[0-9A-F_]*' | head -1)" \
  org.bluez.Device1 Paired 2>/dev/null)
echo "hci1 sees the peripheral as Paired: $paired"
[ "$paired" = "b true" ] || fail "hci1 not paired with the peripheral"
ok "bonded (LE Secure Connections, Just Works)"
btmgmt --index 1 info < /dev/null 2>/dev/null | head -5
kill -TERM $PER; wait $PER
cp /tmp/bluetoothd.log "$OUT"/ 2>/dev/null
echo "total $(since) s"
echo "ALL CHECKS PASSED"
