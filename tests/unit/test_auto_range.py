"""--method auto's pure parts: candidates, the pick, the content-chosen subset, the recorded choice."""
import hashlib

import numpy as np
import pytest

from quant.core.errors import QuantError
from quant.pipeline.auto_range import (BASE_METHODS, Candidate, SEARCH, auto_subset, candidates_for, pick,
                                       recorded_auto)


def test_candidates_name_every_method_then_a_grid_between_them():
    base = {"entropy": 2.0, "minmax": 8.0, "percentile": 5.0, "mse": 4.0}
    cands = candidates_for(base)
    assert [c.label for c in cands[:4]] == list(BASE_METHODS)
    assert [c.amax for c in cands[:4]] == [2.0, 8.0, 5.0, 4.0]
    grid = [c.amax for c in cands if c.label == SEARCH]
    between = [v for v in grid if 2.0 < v < 8.0]
    assert len(between) == 6 and between == sorted(between)  # geometric points strictly between
    assert min(grid) == pytest.approx(1.6)  # and one below the smallest method
    assert all(v == float(np.float32(v)) for v in grid)  # the amax a float32 scale holds, exactly


def test_equal_methods_give_no_grid_between_them():
    cands = candidates_for({m: 3.0 for m in BASE_METHODS})
    assert [c.amax for c in cands if c.label == SEARCH] == [pytest.approx(2.4)]
    zeros = candidates_for({m: 0.0 for m in BASE_METHODS})  # an all-zero tensor: nothing to search
    assert [c.label for c in zeros] == list(BASE_METHODS)


def test_pick_takes_the_lowest_error_and_the_first_on_a_tie():
    cands = [Candidate("entropy", 1.0, 0.5), Candidate("minmax", 2.0, 0.2), Candidate("mse", 1.5, 0.2),
             Candidate(SEARCH, 1.7, 0.3)]
    assert pick(cands) == 1


def _digests(n):
    return [hashlib.sha256(str(i).encode()).digest() for i in range(n)]


def test_subset_is_chosen_by_content_not_by_position():
    indices, digests = list(range(200)), _digests(200)
    first = auto_subset(indices, digests, seed=0, samples=16)
    perm = np.random.default_rng(3).permutation(200)  # the same samples stored in another order
    moved = auto_subset([int(np.flatnonzero(perm == i)[0]) for i in range(200)], digests, seed=0, samples=16)
    position_of = {int(np.flatnonzero(perm == i)[0]): i for i in range(200)}
    assert [position_of[i] for i in moved] == first  # the same samples, scored in the same order
    assert len(set(first)) == 16
    assert auto_subset(indices, digests, seed=1, samples=16) != first  # the seed matters
    assert sorted(auto_subset(indices[:10], digests[:10], seed=0, samples=16)) == indices[:10]  # all when few


def test_recorded_choice_is_read_back_and_a_non_auto_folder_is_refused():
    manifest = {"method": "auto", "auto": {"tensors": {"x": {"amax": 1.5}, "y": {"amax": 0.0}}}}
    amax, record = recorded_auto(manifest, ["x", "y"], "cal")
    assert amax == {"x": 1.5, "y": 0.0} and record is manifest["auto"]
    with pytest.raises(QuantError, match="holds histograms only"):
        recorded_auto({"method": "mse"}, ["x"], "cal")
    with pytest.raises(QuantError, match="no valid amax for tensor 'y'"):
        recorded_auto({"method": "auto", "auto": {"tensors": {"x": {"amax": 1.5}, "y": {"amax": "big"}}}}, ["x", "y"],
                      "cal")
