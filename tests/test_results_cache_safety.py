"""The results cache runs no code from its files and never follows a path outside its folder."""
from __future__ import annotations

import pickle
import warnings

import pytest
import torch

from wna_helpers.book import results_cache
from wna_helpers.book.results_cache import UnsafeCacheWarning, cache_path, cached

MARKER = {}


class Payload:
    """Unpickling this calls ``exec``: what a planted cache file could do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


def _compute(calls: list):
    def f():
        calls.append(1)
        return {"x": torch.arange(3)}
    return f


def test_a_planted_pickle_runs_nothing_and_is_recomputed_with_a_warning_naming_it(tmp_path):
    root, marker = tmp_path / "results", tmp_path / "pwned"
    params = {"a": 1}
    path = cache_path("ci", params, root)
    path.parent.mkdir(parents=True)
    torch.save(Payload(str(marker)), path)   # the file the cache would load for (ci, params)
    # the control: loading it the unsafe way runs the payload
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    calls: list = []
    with pytest.warns(UnsafeCacheWarning, match=str(path)):
        value = cached("ci", params, _compute(calls), root=root)
    assert not marker.exists(), "the planted payload ran"
    assert calls == [1] and torch.equal(value["x"], torch.arange(3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # the recomputed entry loads safely: no warning, no compute
        assert torch.equal(cached("ci", params, _compute(calls), root=root)["x"], torch.arange(3))
    assert calls == [1]


def test_a_dependency_outside_the_cache_folder_is_never_opened(tmp_path):
    root, marker = tmp_path / "results", tmp_path / "pwned"
    outside = tmp_path / "elsewhere.pt"
    with open(outside, "wb") as f:
        pickle.dump(Payload(str(marker)), f)
    params = {"b": 2}
    path = cache_path("ci", params, root)
    path.parent.mkdir(parents=True)
    torch.save({"key": results_cache.cache_key("ci", params), "stamp": "s", "deps": [(str(outside), "t")],
                "value": {"x": torch.zeros(1)}}, path)
    calls: list = []
    with pytest.warns(UnsafeCacheWarning, match="outside the cache folder"):
        value = cached("ci", params, _compute(calls), root=root)
    assert calls == [1] and torch.equal(value["x"], torch.arange(3)) and not marker.exists()


def test_a_truncated_entry_is_a_miss_with_a_warning(tmp_path):
    root = tmp_path / "results"
    calls: list = []
    cached("ci", {"c": 3}, _compute(calls), root=root)
    path = cache_path("ci", {"c": 3}, root)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.warns(UnsafeCacheWarning, match="cannot be loaded safely"):
        cached("ci", {"c": 3}, _compute(calls), root=root)
    assert calls == [1, 1]


def test_every_result_type_round_trips_through_a_safe_load(tmp_path):
    import wna_helpers as wna
    model = wna.build_model("paper_cnn", seed=0)
    ci = wna.classification_images(model, 300, noise="uniform", progress=False)
    sta = wna.spike_triggered_average(model, "conv1", 100, noise="uniform", progress=False)
    value = cached("mixed", {"d": 4}, lambda: {"ci": ci, "sta": [sta], ("t", 1.0): None}, root=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = cached("mixed", {"d": 4}, lambda: pytest.fail("recomputed"), root=tmp_path)
    assert torch.equal(again["ci"].sums, ci.sums) and again["sta"][0].rf == sta.rf and value.keys() == again.keys()


def test_a_value_a_safe_load_could_not_rebuild_is_refused_before_it_is_written(tmp_path):
    with pytest.raises(TypeError, match="cannot store value.*Payload"):
        cached("bad", {"e": 5}, lambda: {"p": Payload("x")}, root=tmp_path)
    assert not list(tmp_path.glob("*.pt"))
