"""Loading, validating and swapping exports (ModelSlot), without HTTP."""
import json
import os
import shutil

import pytest

from rankers.serving.model import repoint
from rankers.serving.model import ModelLoadError, ModelSlot, Watcher, fingerprint, load_model
from tests.conftest import N_ITEMS, version_of


def test_load_model_reads_metadata_and_validates(exports):
    m = load_model(exports["a"])
    assert m.version == version_of(exports["a"]) and m.n_items == N_ITEMS
    assert "u0" in m.known_users and m.features["age"] == "numeric"
    ids, scores = m.recommend("u0", {}, 5, [])
    assert len(ids) == 5 and scores == sorted(scores, reverse=True)
    assert m.describe()["created"] and "metrics" in m.describe()


@pytest.mark.parametrize("damage, message", [
    ("no_dir", "not an export directory"),
    ("bad_model", "cannot load"),
    ("bad_format", "format"),
    ("version_mismatch", "version"),
])
def test_bad_exports_are_refused_with_a_reason(exports, tmp_path, damage, message):
    d = tmp_path / "e"
    if damage != "no_dir":
        shutil.copytree(exports["a"], d)
        meta = json.loads((d / "metadata.json").read_text())
        if damage == "bad_model":
            (d / "model.ts").write_bytes(b"garbage")
        elif damage == "bad_format":
            meta["format"] = "something/else"
        elif damage == "version_mismatch":
            meta["version"] = "other"
        (d / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match=message):
        load_model(d)


def test_slot_swaps_on_repoint_refuses_broken_and_keeps_serving(exports, tmp_path):
    link = tmp_path / "current"
    repoint(link, exports["a"])
    seen = []
    slot = ModelSlot("champion", link, on_swap=lambda v, r, m: seen.append((r, m.version if m else None)))
    held = slot.current  # a request in flight holds this object
    assert not slot.check()  # nothing changed
    repoint(link, exports["b"])
    assert slot.check() and slot.current.version == version_of(exports["b"])
    assert held.version == version_of(exports["a"]) and len(held.recommend("u1", {}, 3, [])[0]) == 3  # old still works
    repoint(link, exports["broken"])
    assert not slot.check()
    assert slot.current.version == version_of(exports["b"]) and slot.refused == 1
    assert "cannot load" in slot.last_error
    assert not slot.check() and slot.refused == 1  # the same broken export is not retried
    os.unlink(link)
    assert not slot.check() and "not an export directory" in slot.last_error  # a missing path: keep serving
    repoint(link, exports["a"])
    assert slot.check() and slot.current.version == version_of(exports["a"]) and slot.last_error is None
    assert [r for r, _ in seen] == ["ok", "ok", "refused", "ok"]
    assert slot.status()["swaps"] == 2


def test_a_directory_replaced_in_place_is_picked_up(exports, tmp_path):
    # rankers.export.export replaces an existing directory by rename: same path, new inode.
    d = tmp_path / "prod"
    shutil.copytree(exports["a"], d)
    slot = ModelSlot("champion", d)
    before = fingerprint(d)
    shutil.copytree(exports["b"], tmp_path / "new")
    os.rename(d, tmp_path / "old")
    os.rename(tmp_path / "new", d)
    assert fingerprint(d) != before
    assert slot.check() and slot.current.version == version_of(exports["b"])


def test_watcher_thread_swaps_and_stops(exports, tmp_path):
    link = tmp_path / "current"
    repoint(link, exports["a"])
    slot = ModelSlot("champion", link)
    w = Watcher([slot], interval_s=0.05)
    w.start()
    try:
        repoint(link, exports["b"])
        import time
        deadline = time.monotonic() + 30
        while slot.current.version != version_of(exports["b"]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert slot.current.version == version_of(exports["b"])
    finally:
        w.stop()
    assert not w._thread.is_alive()
    with pytest.raises(ValueError, match="poll interval"):
        Watcher([slot], 0)



def test_a_string_split_into_characters_by_torch_is_refused_naming_the_fix(exports):
    # model.ts takes lists; torch turns a Python str passed for one into its characters before
    # the model sees it: {"country": "DE"} used to be scored as two unknown values D and E
    import torch
    m = torch.jit.load(str(exports["a"] / "model.ts"))
    with pytest.raises(torch.jit.Error, match=r"categorical feature 'country' takes one value, got 2 "
                                              r"\(a string split into its characters\? pass a list of values: \['DE'\]\)"):
        m.recommend("new", {"country": "DE"}, 5, [])
    with pytest.raises(torch.jit.Error, match=r"numeric feature 'age' takes one value, got 2 .*\['34'\]"):
        m.score("u1", {"age": "34"}, ["i1"])
    with pytest.raises(torch.jit.Error, match=r"categorical feature 'country' takes one value, got 2$"):
        m.recommend("new", {"country": ["DE", "FR"]}, 5, [])  # a cell of the training data holds one
    assert len(m.recommend("new", {"country": ["DE"], "age": ["34"]}, 5, [])[0]) == 5
    assert len(m.recommend("new", {"country": []}, 5, [])[0]) == 5  # no value: still fine


def test_a_multi_field_refuses_only_unknown_single_characters():
    import pandas as pd
    import torch

    from rankers.artifact.users import UserResolver
    from rankers.data.features import FeatureSpec, fit_vocabulary
    from rankers.model import Tokenizer

    table = pd.DataFrame({"tags": ["shoes|x|y", "bags"]}, index=pd.Index(["u1", "u2"], name="user_id"))
    vocab = fit_vocabulary("user_id", ["u1", "u2"], table, [FeatureSpec("tags", "multi")])
    users = torch.jit.script(UserResolver(Tokenizer(vocab), [], torch.zeros(0, 1), torch.zeros(0, 1),
                                          torch.zeros(1), torch.zeros(0), ["i1"]))
    users.check({"tags": ["shoes", "bags"]})
    users.check({"tags": ["x", "y"]})  # single characters that are known values
    with pytest.raises(torch.jit.Error, match=r"multi feature 'tags' got 5 single characters, none of them a "
                                              r"known value \(a string split .*\['shoes'\]\)"):
        users.check({"tags": list("shoes")})
