"""HIL robustness on the emulated boards, longer than the tests: fuzzed frames on both boards, and the lossy
link (bytes dropped or corrupted with probability p) at several p.

    python3 benchmarks/hil_robustness.py [--fuzz 10000] [--lossy 200]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "hil")]
from test_hil_robustness import LossyProxy, _wait_error, fuzz_item  # noqa: E402

from lightning_mcuprune.hil import Board, EmulatedBoard, HILError  # noqa: E402
from lightning_mcuprune.hil import protocol as P  # noqa: E402


def fuzz(name: str, n: int) -> str:
    rng = np.random.default_rng(1)
    with EmulatedBoard(name, timeout=0.5, retries=6) as board:
        before = board.get_stats()
        t0 = time.monotonic()
        answered = 0
        for i in range(n):
            item, expected = fuzz_item(rng, i, board.info["arena_bytes"])
            board.serial.reset_input_buffer()
            board.serial.write(item)
            frames = _wait_error(board.serial, P.FrameParser(), time.monotonic() + 3.0, expected)
            answered += any(f.is_error for f in frames) and all(f.is_error or f.seq != 0 for f in frames)
            if i % 10 == 9:
                board.hello()
        dt = time.monotonic() - t0
        after = board.get_stats()
        restarted = after["frames_ok"] < before["frames_ok"]
    return (f"| {name} | {n} | {answered} | {'yes' if restarted else 'no'} | {dt:.1f} s | "
            f"{dt / n * 1e3:.1f} ms |")


def lossy(p: float, n: int) -> str:
    rng = np.random.default_rng(2)
    with EmulatedBoard("mps2-an386") as q:
        q.serial.timeout = 0.01
        proxy = LossyProxy(q.serial, p=p, seed=3)
        ok = failed = wrong = 0
        t0 = time.monotonic()
        try:
            host = Board(proxy.url, timeout=0.06, retries=8, chunk=48)
        except HILError as e:   # even HELLO did not get through: a clear error, no data
            proxy.close()
            return f"| {p:.3f} | {n} | {proxy.faults} | 0 | all ({type(e).__name__} at connect) | 0 | - | - |"
        for i in range(n):
            data = rng.integers(0, 256, int(rng.integers(8, 200))).astype(np.uint8).tobytes()
            off = int(rng.integers(0, 100_000))
            try:
                host.write(0, off, data)
                if host.read(0, off, len(data)) == data:
                    ok += 1
                else:
                    wrong += 1
            except HILError:
                failed += 1
        dt = time.monotonic() - t0
        host.close()
        proxy.close()
    return (f"| {p:.3f} | {n} | {proxy.faults} | {ok} | {failed} | {wrong} | {host.stats['retries']} | "
            f"{dt:.1f} s |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--fuzz", type=int, default=10_000)
    ap.add_argument("--lossy", type=int, default=200)
    a = ap.parse_args(argv)
    print("| board | fuzzed frames | answered by error frames only | firmware restarted | time | per frame |")
    print("|---|---|---|---|---|---|")
    for name in ("mps2-an386", "mps2-an500"):
        print(fuzz(name, a.fuzz), flush=True)
    print()
    print("| p (per byte, each way) | write+read pairs | faults injected | correct | clear error | WRONG DATA | retries | time |")
    print("|---|---|---|---|---|---|---|---|")
    for p in (0.001, 0.01, 0.03):
        print(lossy(p, a.lossy), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
