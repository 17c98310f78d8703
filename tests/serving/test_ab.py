"""Sticky A/B assignment."""
import numpy as np
import pytest

from rankers.serving.ab import CHALLENGER, CHAMPION, assign_variant, bucket


def test_assignment_is_stable_across_calls_and_processes():
    # A fixed id and salt give a fixed bucket: the hash is SHA-256, not Python's per-process hash().
    assert bucket("u42", "rankers-ab") == bucket("u42", "rankers-ab")
    assert 0.0 <= bucket("u42", "rankers-ab") < 1.0 and bucket("u42", "other-salt") != bucket("u42", "rankers-ab")
    assert [assign_variant(f"u{i}", 0.3) for i in range(50)] == [assign_variant(f"u{i}", 0.3) for i in range(50)]


def test_share_is_met_and_raising_it_only_moves_champions_over():
    ids = [f"user-{i}" for i in range(20000)]
    low = np.array([assign_variant(u, 0.1) == CHALLENGER for u in ids])
    high = np.array([assign_variant(u, 0.3) == CHALLENGER for u in ids])
    assert abs(low.mean() - 0.1) < 0.01 and abs(high.mean() - 0.3) < 0.015
    assert not (low & ~high).any()  # nobody leaves the challenger when the share grows


def test_edges_and_bad_share():
    assert assign_variant("u1", 0.0) == CHAMPION and assign_variant("u1", 1.0) == CHALLENGER
    assert assign_variant(None, 1.0) == CHAMPION and assign_variant("", 1.0) == CHAMPION  # anonymous
    assert assign_variant("u1", 0.5, salt="x") in (CHAMPION, CHALLENGER)
    with pytest.raises(ValueError, match="challenger_share"):
        assign_variant("u1", 1.5)
