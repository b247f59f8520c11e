#!/bin/bash
# Turn a Raspberry Pi (Zero 2 W, 4, 5; Raspberry Pi OS bookworm) into a roaming FIDO2 key.
# Run as root from a checkout of fido-emulator. Reboot afterwards (for the dwc2 overlay).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
config=/boot/firmware/config.txt; [ -f "$config" ] || config=/boot/config.txt

# 1. USB device mode on the OTG port (Zero 2 W: the "USB" port, not "PWR"; Pi 4/5: USB-C)
grep -q '^dtoverlay=dwc2' "$config" || echo 'dtoverlay=dwc2,dr_mode=peripheral' >> "$config"
grep -q '^dwc2$' /etc/modules || echo dwc2 >> /etc/modules
grep -q '^libcomposite$' /etc/modules || echo libcomposite >> /etc/modules

# 2. the program, in its own venv
apt-get install -y python3-venv
mkdir -p /opt/fido-emu
cp -r "$repo"/. /opt/fido-emu/
python3 -m venv /opt/fido-emu/.venv
/opt/fido-emu/.venv/bin/pip install -q '/opt/fido-emu[pi]'

# 3. start at boot
install -m 0644 "$repo/tools/pi/fido-emu.service" /etc/systemd/system/fido-emu.service
systemctl daemon-reload
systemctl enable fido-emu.service
echo "Done. Reboot, then plug the Pi's OTG port into a computer: it appears as a FIDO2 key."
