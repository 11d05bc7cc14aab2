"""The strength steering alone (core/steering.py): no graph, just the gain's rules."""

import pytest

from onnxstyle.core.steering import Steering, SteeringSettings

DEFAULT = SteeringSettings()


def steering(strength=1.0, balanced=True, **settings) -> Steering:
    return Steering(SteeringSettings(**settings), strength, balanced)


def test_the_gain_starts_at_the_start_gain_times_strength():
    assert steering().gain == DEFAULT.start_gain == 3.0
    assert steering(strength=2.0).gain == 6.0
    assert steering(strength=2.0).target == pytest.approx(0.26**2)


def test_a_correction_moves_the_gain_by_at_most_the_step():
    far = steering()
    assert far.correct(0.99) == pytest.approx(3.0 * DEFAULT.step)  # far from the target: 3x up
    near = steering()
    assert near.correct(0.0) == pytest.approx(3.0 / DEFAULT.step)  # overshot: 3x down
    on_target = steering()
    assert on_target.correct(DEFAULT.target_remaining) == pytest.approx(3.0)
    # in between: (remaining / target)^(1/exponent)
    s = steering()
    assert s.correct(0.27) == pytest.approx(3.0 * (0.27 / 0.26) ** (1 / 0.3))


def test_the_gain_stays_within_the_range_of_its_start():
    s = steering()
    for _ in range(10):
        s.correct(0.99)
    assert s.gain == pytest.approx(3.0 * DEFAULT.range)
    for _ in range(10):
        s.correct(1e-9)
    assert s.gain == pytest.approx(3.0 / DEFAULT.range)


def test_a_step_of_one_keeps_the_gain():
    s = steering(step=1.0)
    assert s.active and s.segments(60) == [20, 20, 20]
    assert s.correct(0.99) == 3.0 and s.correct(0.0) == 3.0


@pytest.mark.parametrize(
    "made", [dict(strength=0.0), dict(balanced=False), dict(steer=False)], ids=str
)
def test_strength_zero_raw_weights_and_steer_off_are_not_steered(made):
    s = steering(**made)
    assert not s.active
    assert s.segments(150) == [150]  # one run a scale: no L-BFGS restarts


def test_segments_of_short_and_long_runs():
    s = steering()
    assert s.segments(1) == [1] and s.segments(15) == [15] and s.segments(29) == [29]
    assert s.segments(30) == [15, 15] and s.segments(44) == [22, 22]
    assert s.segments(45) == [15, 15, 15] and s.segments(50) == [16, 16, 18]
    assert s.segments(150) == [50, 50, 50]
    assert sum(s.segments(151)) == 151
    assert steering(segments=5, min_steps=10).segments(100) == [20] * 5
