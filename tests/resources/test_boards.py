import json

import pytest

from lightning_mcuprune.boards import OP_TYPES, BoardProfileError, builtin_boards, load_board


def test_builtin_boards_load_with_datasheet_sizes():
    assert set(builtin_boards()) >= {"mps2-an386", "mps2-an500", "nucleo-f767zi", "nucleo-f446re"}
    f767 = load_board("nucleo-f767zi")
    assert (f767.sram_bytes, f767.flash_bytes, f767.clock_hz, f767.core) == (512 * 1024, 2 * 1024**2, 216_000_000, "cortex-m7")
    f446 = load_board("NUCLEO-F446RE")
    assert (f446.sram_bytes, f446.flash_bytes, f446.clock_hz) == (128 * 1024, 512 * 1024, 180_000_000)
    an386 = load_board("mps2-an386")
    assert an386.emulated and an386.core == "cortex-m4" and an386.sram_bytes == 256 * 1024
    assert load_board("mps2-an500").core == "cortex-m7"
    for name in builtin_boards():
        b = load_board(name)
        assert set(b.latency_coefficients) == set(OP_TYPES)
        assert b.latency_source in ("estimate", "calibrated")
        if b.latency_source == "calibrated":
            assert "calibration" in b.raw["latency"], f"{name}: calibrated coefficients must say where they came from"
    assert load_board("nucleo-f446re").latency_source == "estimate"  # never measured on a board by us


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(BoardProfileError) as e:
        load_board("nucleo-f999")
    msg = str(e.value)
    assert "unknown board 'nucleo-f999'" in msg and "mps2-an386" in msg and "nucleo-f767zi" in msg


def _profile():
    return json.loads(json.dumps(load_board("mps2-an386").to_dict()))


@pytest.mark.parametrize("mutate,field", [
    (lambda d: d.pop("clock_hz"), "clock_hz"),
    (lambda d: d.update(clock_hz="fast"), "clock_hz"),
    (lambda d: d.update(sram_bytes="64 KiBs"), "sram_bytes"),
    (lambda d: d["runtime"].pop("per_op_flash_bytes"), "per_op_flash_bytes"),
    (lambda d: d["latency"].update(source="measured-ish"), "latency.source"),
    (lambda d: d["latency"]["ops"].update(softmax={"const": 1}), "latency.ops.softmax"),
    (lambda d: d["latency"]["ops"]["conv2d"].update(flops=1.0), "latency.ops.conv2d.flops"),
    (lambda d: d["latency"]["ops"]["conv2d"].update(macs=-1.0), "macs"),
    (lambda d: d["latency"]["ops"].pop("dense"), "dense"),
    (lambda d: d.update(colour="blue"), "colour"),
    (lambda d: d["runtime"].update(sram_bytes="1MiB"), "runtime.sram_bytes"),
])
def test_malformed_profile_names_the_field(tmp_path, mutate, field):
    d = _profile()
    mutate(d)
    p = tmp_path / "board.json"
    p.write_text(json.dumps(d))
    with pytest.raises(BoardProfileError) as e:
        load_board(p)
    assert field in str(e.value) and str(p) in str(e.value)


def test_invalid_json_and_missing_file(tmp_path):
    p = tmp_path / "broken.json"
    p.write_text("{ not json")
    with pytest.raises(BoardProfileError, match="not valid JSON"):
        load_board(p)
    with pytest.raises(BoardProfileError, match="does not exist"):
        load_board(tmp_path / "nope.json")


def test_profile_round_trips_through_a_file(tmp_path):
    p = tmp_path / "mine.json"
    d = _profile()
    d["name"] = "my-board"
    p.write_text(json.dumps(d))
    b = load_board(str(p))
    assert b.name == "my-board" and b.sram_available == b.sram_bytes - b.runtime_sram_bytes
