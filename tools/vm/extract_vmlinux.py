#!/usr/bin/env python3
"""Extract the uncompressed ELF kernel (vmlinux) from an x86 bzImage.

qemu boots an ELF vmlinux through the PVH entry point (CONFIG_PVH=y in Debian kernels), which
skips the in-guest decompression of the bzImage: several seconds under TCG.

The bzImage boot header (Documentation/arch/x86/boot.rst) gives the protected-mode code's
offset (``(setup_sects + 1) * 512``) and, inside it, ``payload_offset``/``payload_length`` of
the compressed kernel. The payload format is detected from its magic bytes.

Usage: extract_vmlinux.py BZIMAGE OUTPUT
"""

from __future__ import annotations

import bz2
import lzma
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path


def _payload(image: bytes) -> bytes:
    if image[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS boot header)")
    version = struct.unpack_from("<H", image, 0x206)[0]
    if version < 0x208:
        raise ValueError(f"boot protocol {version:#x} has no payload fields")
    setup_sects = image[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    return image[start : start + payload_length]


def _decompress(payload: bytes) -> bytes:
    if payload.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    if payload.startswith(b"\x1f\x8b"):
        return zlib.decompressobj(wbits=31).decompress(payload)
    if payload.startswith(b"BZh"):
        return bz2.BZ2Decompressor().decompress(payload)
    if payload.startswith(b"\x5d\x00\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(payload)
    if payload.startswith(b"\x28\xb5\x2f\xfd"):
        zstd = shutil.which("zstd")
        if zstd is None:
            raise RuntimeError("zstd-compressed kernel: install the zstd package")
        # the kernel appends a 4-byte size after the frame; zstd stops at the frame end
        proc = subprocess.run([zstd, "-dc"], input=payload, capture_output=True)
        if not proc.stdout:
            raise RuntimeError(f"zstd failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout
    raise ValueError(f"unknown kernel payload compression (magic {payload[:6].hex()})")


def extract(bzimage: Path, output: Path) -> None:
    elf = _decompress(_payload(bzimage.read_bytes()))
    if not elf.startswith(b"\x7fELF"):
        raise ValueError("decompressed payload is not an ELF image")
    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(elf)
    tmp.replace(output)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    extract(Path(argv[1]), Path(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
