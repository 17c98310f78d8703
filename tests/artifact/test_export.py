"""Export writes atomically, describes its features, and serves known users from stored vectors."""
import dataclasses
import json

import numpy as np
import pytest
import torch

import rankers.artifact.writer as ex
from rankers.artifact.schema import ExportBundle
from rankers.artifact.testing import RANDOM_NET
from rankers.model import FeatureSpec, TwoTower
from rankers.training.train import bundle_from_data
from tests.conftest import prep, synthetic_source


def _net(bundle, seed=0, **arch):
    torch.manual_seed(seed)
    return TwoTower(bundle.user_vocab.n_tokens, bundle.item_vocab.n_tokens, len(bundle.item_ids), dim=8,
                    **{**RANDOM_NET, **arch}).eval()


@pytest.fixture(scope="module")
def tiny():
    bundle = bundle_from_data(prep(synthetic_source(60, 40, seed=2).load(), 2.0))
    return _net(bundle), bundle


def test_a_failed_export_leaves_the_old_one_untouched(tiny, tmp_path, monkeypatch):
    net, bundle = tiny
    target = tmp_path / "export"
    ex.export(net, bundle, target, pt2=False)
    before = json.loads((target / "metadata.json").read_text())["version"]

    def boom(*a, **k):
        raise RuntimeError("disk full")
    monkeypatch.setattr(ex, "build_recommender", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        ex.export(net, bundle, target, pt2=False)
    assert json.loads((target / "metadata.json").read_text())["version"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temp dir left behind


def test_temporary_dirs_of_a_killed_export_are_removed_by_the_next(tiny, tmp_path):
    # kill -9 during an export used to leave .export.tmp-* forever; the next export removes those
    # of dead writers on this host, and leaves a live writer's alone
    import subprocess
    import sys
    net, bundle = tiny
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f".export.tmp-{ex.socket.gethostname()}-{dead.pid}-abc_12"
    live = tmp_path / f".export.tmp-{ex.socket.gethostname()}-{ex.os.getpid()}-def_34"
    other = tmp_path / ".other.tmp-host-1-x"  # another target's: not ours to touch
    for d in (orphan, live, other):
        d.mkdir()
        (d / "model.ts").write_bytes(b"half")
    ex.export(net, bundle, tmp_path / "export", pt2=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, other.name, "export"])


def test_history_is_a_reserved_user_feature_name(tiny):
    _, bundle = tiny
    vocab = dataclasses.replace(bundle.user_vocab, specs=bundle.user_vocab.specs + [FeatureSpec("history")])
    with pytest.raises(ValueError, match="reserved"):
        dataclasses.replace(bundle, user_vocab=vocab)


def test_the_bundle_checks_its_shapes_and_round_trips(tiny):
    _, bundle = tiny
    with pytest.raises(ValueError, match=r"ExportBundle.user_tokens must be 2-D with \d+ rows"):
        dataclasses.replace(bundle, user_tokens=bundle.user_tokens[:-1])
    with pytest.raises(ValueError, match=r"ExportBundle.history must have \d+ rows"):
        dataclasses.replace(bundle, history=bundle.history.take(np.arange(3)))
    again = ExportBundle.from_state(bundle.state())
    assert again.user_vocab == bundle.user_vocab and again.item_ids == bundle.item_ids


def test_metadata_describes_numeric_features_by_kind_and_range(tiny, tmp_path):
    net, bundle = tiny
    meta = json.loads((ex.export(net, bundle, tmp_path / "e", pt2=False) / "metadata.json").read_text())
    age = meta["user_features"]["age"]
    assert age["kind"] == "numeric" and age["range"][0] < age["range"][1]
    assert "values" not in age  # no bucket tokens a client could mistake for values
    assert meta["user_features"]["country"]["kind"] == "categorical" and "DE" in meta["user_features"]["country"]["values"]
    assert meta["item_features"]["styles"]["kind"] == "multi" and meta["item_features"]["styles"]["sep"] == "|"
    m = torch.jit.load(str(tmp_path / "e" / "model.ts"))
    m.recommend("new-user", {"age": ["33.5"]}, 3, [])  # a number within the range
    with pytest.raises(Exception, match="numeric feature 'age' got 'b1', which is not a number"):
        m.recommend("new-user", {"age": ["b1"]}, 3, [])


@pytest.mark.parametrize("mlp", [[], [8]])
def test_stored_user_vectors_equal_the_per_request_tower(tiny, mlp):
    # A known user without feature overrides is served from the vector computed at export;
    # sending the user's own stored history recomputes it through the tower, per request.
    _, bundle = tiny
    rec = ex.build_recommender(_net(bundle, seed=1, user_mlp=mlp), bundle, "v")
    assert rec.user_vectors.shape == (len(bundle.user_ids), 8)
    for row in (0, 7, len(bundle.user_ids) - 1):
        user = bundle.user_ids[row]
        own = [bundle.item_ids[i - 1] for i in bundle.history.row(row) if i > 0]
        stored = rec.user_vector(user, {})
        recomputed = rec.user_vector(user, {"history": own})
        torch.testing.assert_close(stored, recomputed, rtol=1e-6, atol=1e-6)
        assert rec.recommend(user, {}, 5, [])[0] == rec.recommend(user, {"history": own}, 5, [])[0]


def test_the_repeat_term_moves_the_users_bag_in_recommend_and_score(tiny):
    _, bundle = tiny
    net = _net(bundle, seed=2, score={"repeat": True, "popularity_prior": False})
    plain = ex.build_recommender(net, bundle, "v")
    with torch.no_grad():
        net.scorer.repeat.fill_(-100.0)  # far below any score: the bag sinks to the bottom
    rec = ex.build_recommender(net, bundle, "v")
    assert float(plain.scorer.repeat) == 0.0 and float(rec.scorer.repeat) == -100.0
    row = next(r for r in range(len(bundle.user_ids)) if (bundle.history.row(r) > 0).sum() >= 2)
    user = bundle.user_ids[row]
    bag = [bundle.item_ids[i - 1] for i in bundle.history.row(row) if i > 0]
    others = [i for i in bundle.item_ids if i not in bag]
    ids, scores = rec.recommend(user, {}, len(others), [])
    assert sorted(ids) == sorted(others)  # every item outside the bag ranks above the bag
    got = rec.score(user, {}, bag[:2] + others[:2])
    base = plain.score(user, {}, bag[:2] + others[:2])
    assert got == pytest.approx([base[0] - 100.0, base[1] - 100.0, base[2], base[3]], abs=1e-4)
    # a history sent with the request is the bag: an item in it sinks for a new user too
    new_ids, _ = rec.recommend("someone-new", {"history": [others[0]]}, len(bundle.item_ids), [])
    assert new_ids[-1] == others[0]


def test_bundle_state_packs_ids_and_vocabularies_and_reads_the_old_layout():
    import numpy as np

    from rankers.artifact.schema import ExportBundle
    from rankers.artifact.testing import random_bundle

    b = random_bundle(300, 60)
    st = b.state()
    # arrays: a checkpoint pickles each Python object on its own (a list of a million ids: seconds per save)
    assert isinstance(st["item_ids"], np.ndarray) and isinstance(st["user_vocab"]["vocab"]["user_id"]["tokens"],
                                                                  np.ndarray)
    back = ExportBundle.from_state(st)
    assert back.item_ids == b.item_ids and back.user_ids == b.user_ids
    assert back.user_vocab.state() == b.user_vocab.state() and back.item_vocab.state() == b.item_vocab.state()
    old = {**st, "item_ids": list(b.item_ids), "user_ids": list(b.user_ids), "user_vocab": b.user_vocab.state(),
           "item_vocab": b.item_vocab.state()}  # checkpoints written before the packing
    again = ExportBundle.from_state(old)
    assert again.user_ids == b.user_ids and again.item_vocab.state() == b.item_vocab.state()
