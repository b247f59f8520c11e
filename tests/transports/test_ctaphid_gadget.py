"""configfs gadget setup/teardown against a fake tree that behaves like configfs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from transports import gadget
from transports.hid_descriptor import report_descriptor

DEFAULT_GROUPS = {"strings", "configs", "functions"}


class FakeConfigFs(gadget.ConfigFs):
    """A plain directory tree with configfs' rules: attribute files go away with their
    directory, binding needs a UDC, and the hid function gets a device number."""

    def __init__(self, config: gadget.GadgetConfig) -> None:
        self.config = config
        self.ops: list[tuple[str, str]] = []

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.config.configfs_root))

    def mkdir(self, path: Path) -> None:
        self.ops.append(("mkdir", self._rel(path)))
        created = not path.exists()
        super().mkdir(path)
        if created and path.parent.name == "functions":
            (path / "dev").write_text("236:0\n")
        if created and path.parent == self.config.configfs_root:
            (path / "UDC").write_text("\n")
            for group in ("strings", "configs", "functions"):
                (path / group).mkdir()
        if created and path.parent.name == "configs":
            (path / "strings").mkdir()

    def write(self, path: Path, data: bytes) -> None:
        self.ops.append(("write", self._rel(path)))
        if path.name == "UDC" and data.strip():
            assert (self.config.udc_class_root / data.decode().strip()).exists()
        super().write(path, data)

    def symlink(self, target: Path, link: Path) -> None:
        self.ops.append(("symlink", self._rel(link)))
        super().symlink(target, link)

    def unlink(self, link: Path) -> None:
        self.ops.append(("unlink", self._rel(link)))
        super().unlink(link)

    def rmdir(self, path: Path) -> None:
        self.ops.append(("rmdir", self._rel(path)))
        assert not any(p.is_symlink() for p in path.iterdir()), "links must go first"
        for child in path.iterdir():
            if child.is_dir():
                # configfs "default groups" (strings/, configs/, functions/) go with their
                # parent, but only once the user has removed everything made inside them.
                assert child.name in DEFAULT_GROUPS, f"rmdir of {path} with {child.name}/"
                assert not any(c.is_dir() for c in child.iterdir()), f"{child} not empty"
                for attr in child.iterdir():
                    attr.unlink()
                child.rmdir()
            else:
                child.unlink()
        super().rmdir(path)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[gadget.GadgetConfig, FakeConfigFs]:
    config = gadget.GadgetConfig(
        name="fido_test",
        pid=0x0042,
        serial="SN42",
        configfs_root=tmp_path / "configfs",
        udc_class_root=tmp_path / "udc",
        sys_char_root=tmp_path / "sysdevchar",
        dev_root=tmp_path / "dev",
    )
    config.configfs_root.mkdir()
    (config.udc_class_root / "dummy_udc.0").mkdir(parents=True)
    (config.sys_char_root / "236:0").mkdir(parents=True)
    (config.sys_char_root / "236:0" / "uevent").write_text("MAJOR=236\nMINOR=0\nDEVNAME=hidg0\n")
    return config, FakeConfigFs(config)


def test_setup_builds_the_gadget(tree: tuple[gadget.GadgetConfig, FakeConfigFs]) -> None:
    config, fs = tree
    path = gadget.setup(config, fs)
    assert path == config.dev_root / "hidg0"
    g = config.gadget_dir
    assert (g / "idVendor").read_text() == "0x1209\n"
    assert (g / "idProduct").read_text() == "0x0042\n"
    assert (g / "bcdUSB").read_text() == "0x0200\n"
    assert (g / "strings/0x409/serialnumber").read_text() == "SN42\n"
    assert (g / "configs/c.1/MaxPower").read_text() == "100\n"
    f = g / "functions/hid.usb0"
    assert (f / "protocol").read_text() == "0\n"
    assert (f / "subclass").read_text() == "0\n"
    assert (f / "report_length").read_text() == "64\n"
    assert (f / "report_desc").read_bytes() == report_descriptor(64)
    link = g / "configs/c.1/hid.usb0"
    assert link.is_symlink() and os.path.realpath(link) == os.path.realpath(f)
    assert (g / "UDC").read_text() == "dummy_udc.0\n"
    # Binding is the very last step: attributes are read-only once bound.
    assert fs.ops[-1] == ("write", "fido_test/UDC")


def test_setup_is_idempotent(tree: tuple[gadget.GadgetConfig, FakeConfigFs]) -> None:
    config, fs = tree
    first = gadget.setup(config, fs)
    fs.ops.clear()
    assert gadget.setup(config, fs) == first
    assert [op for op in fs.ops if op[0] != "read"] == []


def test_setup_rebuilds_a_gadget_with_another_identity(
    tree: tuple[gadget.GadgetConfig, FakeConfigFs],
) -> None:
    config, fs = tree
    gadget.setup(config, fs)
    config.pid = 0x0043
    gadget.setup(config, fs)
    assert (config.gadget_dir / "idProduct").read_text() == "0x0043\n"
    assert ("rmdir", "fido_test") in fs.ops


def test_teardown_order_and_cleanliness(tree: tuple[gadget.GadgetConfig, FakeConfigFs]) -> None:
    config, fs = tree
    gadget.setup(config, fs)
    fs.ops.clear()
    gadget.teardown(config, fs)
    assert not config.gadget_dir.exists()
    assert [op for op in fs.ops] == [
        ("write", "fido_test/UDC"),
        ("unlink", "fido_test/configs/c.1/hid.usb0"),
        ("rmdir", "fido_test/configs/c.1/strings/0x409"),
        ("rmdir", "fido_test/configs/c.1"),
        ("rmdir", "fido_test/functions/hid.usb0"),
        ("rmdir", "fido_test/strings/0x409"),
        ("rmdir", "fido_test"),
    ]
    gadget.teardown(config, fs)  # nothing left: no error


def test_explicit_udc_and_missing_udc(tree: tuple[gadget.GadgetConfig, FakeConfigFs]) -> None:
    config, fs = tree
    assert gadget.find_udc(config, fs) == "dummy_udc.0"
    config.udc = "fe980000.usb"
    assert gadget.find_udc(config, fs) == "fe980000.usb"
    config.udc = None
    (config.udc_class_root / "dummy_udc.0").rmdir()
    with pytest.raises(gadget.GadgetError):
        gadget.find_udc(config, fs)


def test_hidg_path_falls_back_to_minor(tree: tuple[gadget.GadgetConfig, FakeConfigFs]) -> None:
    config, fs = tree
    gadget.setup(config, fs)
    (config.sys_char_root / "236:0" / "uevent").unlink()
    (config.gadget_dir / "functions/hid.usb0/dev").write_text("236:3\n")
    assert gadget.hidg_path(config, fs) == config.dev_root / "hidg3"
