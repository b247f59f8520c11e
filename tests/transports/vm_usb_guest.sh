#!/bin/bash
# Runs inside the qemu guest (tools/vm): the emulator as a UHID device and as a configfs USB
# HID gadget on dummy_hcd, exercised by libfido2's tools and OpenSSH. Prints "CHECK ok <name>"
# per passed check; exits non-zero at the first failure.
set -u
PY=${FIDO_EMU_PYTHON:-.venv/bin/python}
OUT=${FIDO_EMU_VM_OUT:-/tmp}
export HOME=/tmp/home; mkdir -p $HOME/.ssh
fail() { echo; echo "CHECK FAIL $*"; tail -n 30 /tmp/emu-*.log 2>/dev/null; exit 1; }
ok() { echo; echo "CHECK ok $*"; }

wait_devices() {  # wait until fido2-token -L lists $1 devices
  for _ in $(seq 1 240); do
    n=$(fido2-token -L 2>/dev/null | grep -c hidraw)
    [ "$n" -ge "$1" ] && return 0
    sleep 0.5
  done
  return 1
}

exercise() {  # $1 = label, $2 = device path
  label=$1; dev=$2
  fido2-token -I "$dev" > /tmp/info.txt 2>&1 || fail "$label fido2-token -I"
  grep -q "FIDO_2_1" /tmp/info.txt || fail "$label info lacks FIDO_2_1"
  grep -q "ca176c2b" /tmp/info.txt || fail "$label info lacks our AAGUID"
  ok "$label fido2-token -I"
  for rk in "" "-r"; do
    printf '%s\n' "$(head -c32 /dev/urandom | base64)" "example.com" "alice" "$(head -c16 /dev/urandom | base64)" > /tmp/cred_in
    fido2-cred -M $rk -i /tmp/cred_in -o /tmp/cred_out "$dev" es256 || fail "$label fido2-cred -M $rk"
    fido2-cred -V -i /tmp/cred_out -o /tmp/cred_pub es256 || fail "$label fido2-cred -V $rk"
    ok "$label fido2-cred -M/-V ${rk:-non-resident}"
    { head -c32 /dev/urandom | base64; echo example.com; sed -n 5p /tmp/cred_out; sed -n 1p /tmp/cred_pub; } > /tmp/assert_in
    { sed -n 1,3p /tmp/assert_in; } > /tmp/assert_req
    printf '%s\n' "$(sed -n 1p /tmp/assert_in)" example.com "$(sed -n 3p /tmp/assert_in)" > /tmp/assert_req
    fido2-assert -G -i /tmp/assert_req -o /tmp/assert_out "$dev" || fail "$label fido2-assert -G $rk"
    fido2-assert -V -i /tmp/assert_out /tmp/cred_pub es256 || fail "$label fido2-assert -V $rk"
    ok "$label fido2-assert -G/-V ${rk:-non-resident}"
  done
}

# --- UHID -------------------------------------------------------------------------------
$PY -m authenticator.frontdoor.cli run --transport uhid --presence auto --store /tmp/uhid.db > /tmp/emu-uhid.log 2>&1 &
EMU=$!
wait_devices 1 || fail "uhid device never listed by fido2-token -L"
DEV=$(fido2-token -L | grep hidraw | head -1 | cut -d: -f1)
ok "uhid listed as $DEV"
exercise uhid "$DEV"

# OpenSSH with the emulator as the key
export SSH_SK_PROVIDER=internal
ssh-keygen -q -t ecdsa-sk -N "" -f $HOME/.ssh/id_ecdsa_sk -C ci@vm </dev/null || fail "ssh-keygen ecdsa-sk"
ok "ssh-keygen -t ecdsa-sk"
ssh-keygen -q -t ed25519-sk -O resident -O application=ssh:fidoemu -N "" -f $HOME/.ssh/id_ed25519_sk </dev/null || fail "ssh-keygen ed25519-sk resident"
ok "ssh-keygen -t ed25519-sk -O resident"
echo "signed by the emulator" > /tmp/msg
ssh-keygen -Y sign -f $HOME/.ssh/id_ed25519_sk -n file /tmp/msg </dev/null || fail "ssh-keygen -Y sign"
echo "ci@vm $(cat $HOME/.ssh/id_ed25519_sk.pub)" > /tmp/allowed
ssh-keygen -Y verify -f /tmp/allowed -I ci@vm -n file -s /tmp/msg.sig < /tmp/msg || fail "ssh-keygen -Y verify"
ok "ssh-keygen -Y sign/verify"
kill -TERM $EMU; wait $EMU || fail "emulator did not stop cleanly (uhid)"
sleep 1
fido2-token -L | grep -q hidraw && fail "uhid device still present after SIGTERM"
ok "uhid destroyed on SIGTERM"

# --- with a PIN, set through our management CLI (CTAP ClientPIN, in-process on the store) ---
$PY -m authenticator.frontdoor.cli pin set --store /tmp/uhid.db --new-pin 123456 || fail "fido-emu pin set"
$PY -m authenticator.frontdoor.cli run --transport uhid --presence auto --store /tmp/uhid.db > /tmp/emu-uhid2.log 2>&1 &
EMU=$!
wait_devices 1 || fail "uhid device (PIN) never listed"
DEV=$(fido2-token -L | grep hidraw | head -1 | cut -d: -f1)
fido2-token -I "$DEV" | grep -q "clientPin" || fail "getInfo lacks clientPin"
printf '%s\n' "$(head -c32 /dev/urandom | base64)" "example.com" "bob" "$(head -c16 /dev/urandom | base64)" > /tmp/cred_in
echo 123456 | fido2-cred -M -r -v -i /tmp/cred_in -o /tmp/cred_out "$DEV" es256 || fail "fido2-cred -M -r -v with PIN"
fido2-cred -V -v -i /tmp/cred_out -o /tmp/cred_pub es256 || fail "fido2-cred -V -v"
ok "uhid fido2-cred -M -r -v with PIN, verified with UV"
mkdir -p /tmp/dl && cd /tmp/dl && echo 123456 | ssh-keygen -K -N "" || fail "ssh-keygen -K"
ls /tmp/dl | grep -q id_ed25519_sk_rk || fail "ssh-keygen -K downloaded nothing"
cd - >/dev/null
ok "ssh-keygen -K downloaded the resident key"
kill -TERM $EMU; wait $EMU || fail "emulator did not stop cleanly (uhid, PIN)"
sleep 1

# --- USB gadget on dummy_hcd --------------------------------------------------------------
$PY -m authenticator.frontdoor.cli run --transport gadget --presence auto --store /tmp/gadget.db > /tmp/emu-gadget.log 2>&1 &
EMU=$!
wait_devices 1 || fail "gadget never listed by fido2-token -L"
DEV=$(fido2-token -L | grep hidraw | head -1 | cut -d: -f1)
ok "gadget listed as $DEV"
$PY tests/transports/vm_usb_descriptors.py 2>&1 || fail "USB descriptors"
ok "pyusb descriptors"
exercise gadget "$DEV"
$PY tests/transports/vm_fido2_hidraw.py 2>&1 || fail "python-fido2 CtapHidDevice over hidraw"
ok "python-fido2 CtapHidDevice over hidraw: makeCredential, getAssertion, PING 7609"
kill -TERM $EMU; wait $EMU || fail "emulator did not stop cleanly (gadget)"
ok "gadget stopped"
echo "ALL CHECKS PASSED"
