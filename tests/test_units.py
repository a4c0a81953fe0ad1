import pytest

from lightning_mcuprune.units import format_size, parse_size


@pytest.mark.parametrize("text,expected", [
    (65536, 65536), ("64KiB", 65536), ("1.5MiB", 1572864), ("256KB", 256000), ("2 MB", 2_000_000),
    ("512", 512), ("64kib", 65536), ("1GiB", 1024**3), (2048.0, 2048), ("128K", 131072),
])
def test_parse_size_accepts(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("bad", ["64 KiBs", "abc", "", "-5KiB", "0", 0, -1, "1.5B", "KiB", True, None, [64], 1.5, "1e400MiB"])
def test_parse_size_rejects_with_clear_message(bad):
    with pytest.raises(ValueError) as e:
        parse_size(bad, what="sram budget")
    assert "sram budget" in str(e.value)
    assert "KiB" in str(e.value) or "whole" in str(e.value) or "positive" in str(e.value)


def test_format_size():
    assert format_size(65536) == "64.0 KiB"
    assert format_size(3 * 1024**2) == "3.0 MiB"
    assert format_size(100) == "100 B"
