#!/bin/bash
# Runs inside the qemu guest (tools/vm): hybrid (caBLE v2) with the advert over a real (btvirt)
# radio. Two linked btvirt controllers and one bluetoothd; our tunnel server on loopback; the
# phone is `fido-emu hybrid scan --ble --adapter hci0`, the desktop a bleak scan on hci1 +
# HybridCtapDevice + python-fido2 (vm_hybrid_desktop.py). Prints "CHECK ok <name>" per check.
set -u
PY=${FIDO_EMU_PYTHON:-.venv/bin/python}
OUT=${FIDO_EMU_VM_OUT:-/tmp}
HERE=tests/transports/hybrid
PORT=8765
fail() {
  echo "CHECK FAIL $*"
  echo "--- tunnel server log (tail) ---"; tail -n 30 $OUT/tunnel.log
  echo "--- bluetoothd log (tail) ---"; tail -n 80 /tmp/bluetoothd.log
  cp /tmp/bluetoothd.log "$OUT"/ 2>/dev/null
  exit 1
}
ok() { echo "CHECK ok $*"; }
t0=$(date +%s.%N)
since() { echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo "?"; }

. tests/transports/ble/vm_bluez_radio.sh  # btvirt hci0/hci1 + bluetoothd
{ adapter_up hci0 && adapter_up hci1; } || fail "bluetoothd does not have hci0 and hci1"
ok "btvirt + bluetoothd up ($(since) s)"

$PY -m authenticator.frontdoor.cli tunnel-server --host 127.0.0.1 --port $PORT > $OUT/tunnel.log 2>&1 &
TUNNEL=$!
SECONDS=0
until grep -q "listening on" $OUT/tunnel.log; do
  [ $SECONDS -gt 300 ] && fail "tunnel server did not start within 300 s"
  kill -0 $TUNNEL 2>/dev/null || fail "tunnel server exited"
  sleep 0.5
done
ok "tunnel server on ws://127.0.0.1:$PORT ($(since) s)"

btmon > /tmp/btmon.log 2>&1 &
BTMON=$!
$PY $HERE/vm_hybrid_desktop.py ws://127.0.0.1:$PORT "$OUT" || {
  kill $BTMON 2>/dev/null
  grep -n -B2 -A12 "LE Set.*Advertising Data\|Service Data" /tmp/btmon.log | head -60
  fail "desktop checks"
}

# Both roles from the CLI: `hybrid qr --ble` (desktop, hci1) and `hybrid scan --ble` (phone,
# hci0) sign in with the passkey registered above.
t1=$(date +%s.%N)
$PY -m authenticator.frontdoor.cli hybrid qr --request ga --ble --adapter hci1 \
  --tunnel-url ws://127.0.0.1:$PORT --timeout 600 > $OUT/qr.out 2> $OUT/qr.log &
QR=$!
SECONDS=0
until grep -q "^FIDO:/" $OUT/qr.out; do
  [ $SECONDS -gt 300 ] && fail "hybrid qr printed no QR code within 300 s"
  kill -0 $QR 2>/dev/null || { cat $OUT/qr.log; fail "hybrid qr exited"; }
  sleep 0.5
done
$PY -m authenticator.frontdoor.cli hybrid scan "$(grep -m1 '^FIDO:/' $OUT/qr.out)" --ble --adapter hci0 \
  --tunnel-url ws://127.0.0.1:$PORT --presence auto --store /tmp/phone.db > $OUT/phone-cli.log 2>&1 \
  || { cat $OUT/phone-cli.log $OUT/qr.log; fail "hybrid scan --ble (phone CLI) failed"; }
wait $QR || { cat $OUT/qr.log; fail "hybrid qr --ble (desktop CLI) failed"; }
cat $OUT/phone-cli.log; tail -n 1 $OUT/qr.out
grep -q "advertising over BLE on /org/bluez/hci0" $OUT/phone-cli.log || fail "phone CLI did not advertise"
grep -q '"credentialId"' $OUT/qr.out || fail "hybrid qr printed no assertion"
ok "fido-emu hybrid qr --ble + hybrid scan --ble: discoverable sign-in over the radio ($(echo "$(date +%s.%N) - $t1" | bc) s)"

kill $BTMON 2>/dev/null
echo "--- btmon: the phone's advertising data (first) ---"
grep -m1 -A10 "Set Extended Advertising Data\|LE Set Advertising Data" /tmp/btmon.log
cp /tmp/btmon.log /tmp/bluetoothd.log "$OUT"/ 2>/dev/null
kill -TERM $TUNNEL; wait $TUNNEL 2>/dev/null
echo "total $(since) s"
echo "ALL CHECKS PASSED"
