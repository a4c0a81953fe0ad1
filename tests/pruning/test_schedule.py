"""The pruning schedule (pruning/schedule.py): a pure function of the run's length and the callback's options."""
import math

import pytest

from lightning_mcuprune.pruning.schedule import Phase, Schedule, check_schedule, make_schedule


def test_fractions_of_the_run():
    s = make_schedule(200, max_epochs=4, warmup=0.1, prune_end=0.6, removals=3)
    assert s == Schedule(total=200, warmup=20, harden=120, removals=(45, 70, 95))
    assert s.progress(20) == 0 and s.progress(70) == 0.5 and s.progress(120) == 1


def test_epochs_and_limits():
    s = make_schedule(50, max_epochs=5, warmup=1, prune_end=3, removals=1)   # 10 steps per epoch
    assert (s.warmup, s.harden, s.removals) == (10, 30, (20,))
    s = make_schedule(50, max_epochs=5, warmup=4, prune_end=9, removals=0)   # prune_end past the run: the last step
    assert (s.warmup, s.harden, s.removals) == (40, 50, ())
    s = make_schedule(5, max_epochs=None, warmup=0.99, prune_end=1.0, removals=2)  # hardening at least one step later
    assert s.harden == s.warmup + 1 and s.removals == (s.warmup, s.warmup + 1)
    assert make_schedule(10.0, max_epochs=-1, warmup=1, prune_end=2, removals=0).warmup == 10  # one "epoch": the run


@pytest.mark.parametrize("total", [0, math.inf, -3])
def test_a_run_without_finite_length_is_refused(total):
    with pytest.raises(ValueError, match="finite run"):
        make_schedule(total, max_epochs=None, warmup=0.1, prune_end=0.6, removals=3)


@pytest.mark.parametrize("warmup, prune_end, match", [(0.6, 0.1, "must come before"), (2, 2, "must come before"),
                                                      (1.5, 0.1, "bad warmup"), (0.1, True, "bad prune_end"),
                                                      (-1, 3, "bad warmup"), (0.1, "0.6", "bad prune_end")])
def test_bad_options(warmup, prune_end, match):
    with pytest.raises(ValueError, match=match):
        check_schedule(warmup, prune_end)


def test_mixed_kinds_are_not_ordered():
    check_schedule(5, 0.5)   # epoch 5 and half the run: which comes first depends on the run; checked by make_schedule
    check_schedule(0.0, 0.1)


def test_phase_is_its_string():
    assert Phase.PRUNING == "pruning" and Phase("dense-fits") is Phase.DENSE_FITS and f"{Phase.WARMUP}" == "warmup"
    assert [p.active for p in Phase] == [False, False, True, True, False]
