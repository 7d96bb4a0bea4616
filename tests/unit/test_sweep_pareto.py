"""Pareto front on hand-made points: dominance, ties, duplicates, directions, bad input."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from aeforge.sweep.pareto import dominates, pareto_front, plot_front


def test_dominance() -> None:
    assert dominates([1, 2], [2, 2])
    assert not dominates([1, 2], [1, 2])  # equal points do not dominate each other
    assert not dominates([1, 3], [2, 2])  # a trade-off
    assert dominates([0.5, 1, 1, 1], [0.5, 1, 1, 2])


def test_two_objective_front() -> None:
    points = [
        (1.0, 9.0),  # 0 front
        (2.0, 7.0),  # 1 front
        (3.0, 7.0),  # 2 dominated by 1 (tie in y, worse x)
        (4.0, 3.0),  # 3 front
        (5.0, 3.0),  # 4 dominated by 3
        (6.0, 1.0),  # 5 front
        (6.0, 2.0),  # 6 dominated by 5 (tie in x)
        (9.0, 9.0),  # 7 dominated by all
    ]
    assert pareto_front(points) == [0, 1, 3, 5]


def test_duplicates_on_the_front_are_all_kept() -> None:
    points = [(1, 2), (1, 2), (2, 1), (2, 2), (2, 1)]
    assert pareto_front(points) == [0, 1, 2, 4]


def test_four_objectives_and_a_single_point() -> None:
    # (EMD, LUT, energy, bytes): trial 2 is worse than trial 0 everywhere; 1 trades EMD for bytes
    points = [(1.0, 100, 1e-12, 18.0), (1.5, 100, 1e-12, 6.0), (1.2, 120, 2e-12, 18.0), (0.9, 5000, 5e-11, 18.0)]
    assert pareto_front(points) == [0, 1, 3]
    assert pareto_front([(3.0, 4.0)]) == [0]
    assert pareto_front([]) == []


def test_max_direction() -> None:
    points = [(1, 10), (2, 5), (1, 5)]
    assert pareto_front(points, ["min", "max"]) == [0]
    assert pareto_front(points, ["min", "min"]) == [2]


def test_matches_brute_force_on_random_points() -> None:
    rng = random.Random(4)
    for _ in range(30):
        points = [tuple(rng.choice([1, 2, 3, 4]) for _ in range(3)) for _ in range(rng.randint(1, 25))]
        expected = [i for i, p in enumerate(points)
                    if not any(all(a <= b for a, b in zip(q, p, strict=True)) and q != p for q in points)]
        assert pareto_front(points) == expected
        # no front point is dominated, every other point is
        front = set(pareto_front(points))
        for i, j in itertools.product(range(len(points)), repeat=2):
            if i in front:
                assert not dominates(points[j], points[i])
        for i in set(range(len(points))) - front:
            assert any(dominates(points[j], points[i]) for j in front)


@pytest.mark.parametrize(("points", "directions", "message"), [
    ([(1, float("nan"))], None, "non-finite"),
    ([(1, None)], None, "non-finite"),
    ([(1, 2), (1,)], None, "has 1 values"),
    ([(1, 2)], ["min"], "1 directions for 2"),
    ([(1, 2)], ["min", "up"], "direction must be"),
])
def test_bad_input(points: list, directions: list | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pareto_front(points, directions)


def test_plot_front_writes_a_png(tmp_path: Path) -> None:
    points = [(1.0, 100, 1e-12, 18.0), (1.5, 90, 1e-10, 6.0), (1.2, 120, 2e-12, 18.0)]
    path = tmp_path / "front.png"
    plot_front(path, ["emd", "lut", "energy_j", "bytes"], points, [0, 1], ["0000", "0001", "0002"], "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
