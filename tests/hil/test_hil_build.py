"""The firmware builds for every board with -Werror, and the build prints flash and RAM use that fits each part."""
import re
import subprocess

from hil_fixtures import require_hil_tools
from lightning_mcuprune.hil.emulated import FIRMWARE_TARGETS, firmware_dir

LINE = re.compile(r"^(\S+)\s+flash\s+(\d+) B of\s+(\d+) KiB \| SRAM\s+(\d+) KiB of\s+(\d+) KiB", re.M)


def test_make_all_prints_sizes_and_images_fit(tmp_path):
    require_hil_tools()
    r = subprocess.run(["make", "-C", str(firmware_dir()), f"BUILD={tmp_path}", "all"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    sizes = {m[0]: tuple(int(v) for v in m[1:]) for m in LINE.findall(r.stdout)}
    assert set(sizes) == set(FIRMWARE_TARGETS), r.stdout
    for board, (flash, flash_kib, sram_kib, sram_total_kib) in sizes.items():
        assert 0 < flash <= flash_kib * 1024 and sram_kib <= sram_total_kib, board
        assert (tmp_path / board / "firmware.bin").stat().st_size > 1000
    # the smallest part: the image with its arena fits 512 KiB flash and 128 KiB SRAM
    flash, flash_kib, sram_kib, sram_total_kib = sizes["nucleo-f446re"]
    assert flash_kib == 512 and sram_total_kib == 128 and sram_kib <= 128 and flash < 64 * 1024
    assert sizes["mps2-an386"][1] == 1024 and sizes["mps2-an386"][3] == 256
    assert sizes["mps2-an500"][1] == 2048 and sizes["mps2-an500"][3] == 512


def test_runtime_reserve_overflow_fails_the_link(tmp_path):
    """The linker refuses an image whose .data + .bss + stack exceed the 16 KiB runtime reserve."""
    require_hil_tools()
    r = subprocess.run(["make", "-s", "-C", str(firmware_dir()), f"BUILD={tmp_path}",
                        "EXTRA_CFLAGS=-DMAX_PAYLOAD=16384u", "mps2-an386"], capture_output=True, text=True)
    assert r.returncode != 0
    assert "runtime (.data + .bss + stack) exceeds its SRAM reserve" in r.stderr


def test_emulated_profiles_fixed_flash_is_the_measured_image(tmp_path):
    """The emulated boards' runtime flash is the firmware image's size (measured), so predicted flash is what the
    board holds (within 5%: the firmware changes a little between profile updates)."""
    require_hil_tools()
    from lightning_mcuprune.boards import load_board
    r = subprocess.run(["make", "-s", "-C", str(firmware_dir()), f"BUILD={tmp_path}", "mps2-an386", "mps2-an500"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for board in ("mps2-an386", "mps2-an500"):
        image = (tmp_path / board / "firmware.bin").stat().st_size
        assert abs(load_board(board).runtime_flash_bytes - image) <= 0.05 * image, (board, image)
