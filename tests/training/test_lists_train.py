"""ElasticRank through Hydra and Lightning (experiment=elasticrank), and its Bayesian tuning
(rankers tune): the preset of the best trial reproduces that trial."""
import json

import numpy as np
import pytest
import yaml

from rankers.training.train import train
from rankers.training.tuning import compose


def write_letor(path, n_lists, seed):
    """Lists whose best row is told by features 1 and 2 (and noise in 3..20)."""
    rng = np.random.default_rng(seed)
    lines, sizes = [], []
    for _ in range(n_lists):
        n = int(rng.integers(4, 9))
        x = rng.random((n, 20))
        u = 2 * x[:, 0] - x[:, 1] + 0.2 * rng.normal(size=n)
        rank = u.argsort().argsort()
        for r in range(n):
            label = 2 if rank[r] == n - 1 else 1 if rank[r] == n - 2 else 0
            lines.append(f"{label} " + " ".join(f"{j + 1}:{x[r, j]:.4f}" for j in range(20)))
        sizes.append(n)
    path.write_text("\n".join(lines) + "\n")
    path.with_name(path.name + ".query").write_text("\n".join(map(str, sizes)) + "\n")
    return path


@pytest.fixture
def letor(tmp_path):
    return (write_letor(tmp_path / "rank.train", 150, 0), write_letor(tmp_path / "rank.test", 50, 1))


def base(letor):
    return ["experiment=elasticrank", f"data.source.train={letor[0]}", f"data.source.test={letor[1]}",
            "trainer.max_epochs=3", "trainer.enable_progress_bar=false"]


def test_elasticrank_trains_tests_and_exports_its_non_zero_weights(letor, tmp_path):
    m = train(compose([*base(letor), "optim.l1=0.01"], tmp_path / "run"))
    assert m["test/ndcg@5"] > m["random/ndcg@5"] + 0.2
    assert 0 < m["test/nonzeros"] < 20 and "val/ndcg@5_best" in m
    lin = json.loads((tmp_path / "run" / "export" / "linear.json").read_text())
    assert lin["n_features"] == 20 and len(lin["index"]) == m["test/nonzeros"] and 0 in lin["index"]
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == m


def test_bad_list_settings_are_refused(letor, tmp_path):
    with pytest.raises(Exception, match="data.scale must be 'list' or 'none'"):
        train(compose([*base(letor), "data.scale=z"], tmp_path / "a"))
    with pytest.raises(ValueError, match="for the two-tower model"):
        train(compose([*base(letor), "init_from=somewhere"], tmp_path / "b"))


@pytest.mark.slow
def test_tuning_resumes_and_its_preset_reproduces_the_best_trial(letor, tmp_path, monkeypatch, capsys):
    pytest.importorskip("optuna")
    from rankers.tune import main as tune_main

    monkeypatch.chdir(tmp_path)
    tune_main(["--name", "er_test", "--trials", "3", "--", *base(letor)])
    tune_main(["--name", "er_test", "--trials", "4", "--", *base(letor)])  # resumes: one more trial
    out = capsys.readouterr().out
    start = out.rindex('{\n  "best_value"')  # the second run's report
    report = json.loads(out[start:out.index("}\n", start) + 1])
    assert report["trials"] == 4
    preset = tmp_path / "configs" / "experiment" / "er_test.yaml"
    assert preset.read_text().startswith("# @package _global_")
    assert yaml.safe_load(preset.read_text())["optim"]["_target_"].endswith(report["params"]["optim"].upper())
    assert (tmp_path / "outputs" / "tune" / "er_test" / "trials.png").is_file()
    again = train(compose(["experiment=er_test"], tmp_path / "again"))
    assert again["val/ndcg@5_best"] == pytest.approx(report["best_value"], abs=1e-9)


def test_elasticrank_reads_csv_list_tables(tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    for name, n in (("train", 120), ("test", 40)):
        rows = []
        for lst in range(n):
            x = rng.random((6, 2))
            brand = rng.choice(["good", "bad", "plain"], 6)
            u = 2 * x[:, 0] + (brand == "good") - (brand == "bad") + 0.2 * rng.normal(size=6)
            top = u.argmax()
            rows += [{"list_id": f"{name}{lst}", "label": int(r == top), "price": x[r, 0], "age": x[r, 1],
                      "brand": brand[r]} for r in range(6)]
        pd.DataFrame(rows).sample(frac=1.0, random_state=0).to_csv(tmp_path / f"{name}.csv", index=False)
    m = train(compose(["experiment=elasticrank", "data=list_table", f"data.source.train={tmp_path / 'train.csv'}",
                       f"data.source.test={tmp_path / 'test.csv'}", "data.source.numeric=[price,age]",
                       "data.source.categorical=[brand]", "trainer.max_epochs=3",
                       "trainer.enable_progress_bar=false"], tmp_path / "run"))
    assert m["n_features"] == 5 and m["test/ndcg@1"] > m["random/ndcg@1"] + 0.25


@pytest.fixture(scope="module")
def world_retriever(tmp_path_factory):
    """A two-tower export over the ids of a World(400 users, 150 items) (random weights)."""
    from rankers.artifact.testing import random_export

    return random_export(tmp_path_factory.mktemp("retriever") / "export", n_items=150, n_users=400, seed=1, pt2=False)


def test_two_stage_experiment_reports_the_retriever_and_exports_rerank(world_retriever, tmp_path):
    import torch

    m = train(compose(["experiment=two_stage", f"data.source.retriever={world_retriever}", "data.source.n_users=400",
                       "data.source.n_items=150", "data.source.mean_views=20", "data.source.visits=3000",
                       "data.source.test_visits=1000", "data.source.user_buckets=64", "two_stage.candidates=30",
                       "trainer.enable_progress_bar=false"], tmp_path / "run"))
    for k in (1, 5):
        assert 0.0 <= m[f"retriever/recall@{k}"] <= 1.0 and m[f"random/recall@{k}"] < m[f"test/recall@{k}"]
    meta = json.loads((tmp_path / "run" / "export" / "metadata.json").read_text())
    assert meta["format"] == "rankers.two_stage/1" and meta["candidates"] == 30
    assert meta["metrics"]["test/recall@1"] == m["test/recall@1"] and "retrieval_score" in meta["columns"]
    ts = torch.jit.load(str(tmp_path / "run" / "export" / "model.ts"))
    ids, scores = ts.recommend("u5", {}, 5, [])
    assert len(ids) == 5 and scores == sorted(scores, reverse=True)
    lin = json.loads((tmp_path / "run" / "export" / "linear.json").read_text())
    assert lin["encoding"]["numeric"][-1] == "retrieval_score" and len(lin["names"]) == len(lin["index"])


def test_a_list_table_with_a_retriever(world_retriever, tmp_path):
    import pandas as pd

    rng = np.random.default_rng(0)
    for name, n in (("train", 100), ("test", 30)):
        rows = [{"list_id": f"{name}{lst}", "user_id": f"u{rng.integers(400)}", "item_id": f"i{i}",
                 "label": int(r == 0), "price": rng.random(), "brand": f"b{i % 3}"}
                for lst in range(n) for r, i in enumerate(rng.choice(150, 5, replace=False))]
        pd.DataFrame(rows).to_csv(tmp_path / f"{name}.csv", index=False)
    args = ["experiment=elasticrank", "data=list_table", f"data.source.train={tmp_path / 'train.csv'}",
            f"data.source.test={tmp_path / 'test.csv'}", "data.source.numeric=[price]",
            "data.source.categorical=[brand]", f"data.source.retriever={world_retriever}",
            "data.source.item_columns=[brand]", "trainer.max_epochs=2", "trainer.enable_progress_bar=false"]
    m = train(compose(args, tmp_path / "run"))
    assert m["n_features"] == 1 + 3 + 1 and "retriever/ndcg@5" in m
    import torch

    ts = torch.jit.load(str(tmp_path / "run" / "export" / "model.ts"))
    ids, _ = ts.rerank("u1", {}, ["i1", "i2", "i3"], {"price": ["0.5", "0.1", "0.9"]})
    assert sorted(ids) == ["i1", "i2", "i3"]
    bad = pd.read_csv(tmp_path / "test.csv")
    bad.loc[3, "item_id"] = "i999"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    from rankers.data.errors import DataError

    with pytest.raises(DataError, match=r"bad.csv.*column 'item_id'.*unknown item id 'i999'"):
        train(compose([*args[:3], f"data.source.test={tmp_path / 'bad.csv'}", *args[4:]], tmp_path / "bad"))


@pytest.mark.parametrize("optim", [["optim.l1=0.001"], ["optim=psgd", "~optim.gamma", "optim.threshold=0.02"]])
def test_lazy_updates_train_the_same_model_through_lightning(optim, tmp_path):
    args = ["experiment=elasticrank_shop", *optim, "data.source.n_users=400", "data.source.n_items=150",
            "data.source.mean_views=20", "data.source.visits=2000", "data.source.test_visits=500",
            "data.source.user_buckets=64", "trainer.enable_progress_bar=false"]
    dense = train(compose([*args, "model.sparse_grad=false"], tmp_path / "dense"))
    lazy = train(compose([*args, "model.sparse_grad=true"], tmp_path / "lazy"))
    assert lazy["test/ndcg@5"] == pytest.approx(dense["test/ndcg@5"], abs=1e-6)
    assert lazy["test/nonzeros"] == dense["test/nonzeros"]
    w = [np.array(json.loads((tmp_path / r / "export" / "linear.json").read_text())["weight"]) for r in ("dense", "lazy")]
    np.testing.assert_allclose(w[0], w[1], atol=1e-5)


def test_two_stage_refusals_name_the_problem(world_retriever, tmp_path):
    base = ["experiment=two_stage", f"data.source.retriever={world_retriever}", "data.source.n_users=400",
            "data.source.visits=300", "data.source.test_visits=100", "data.source.user_buckets=64",
            "trainer.enable_progress_bar=false"]
    with pytest.raises(ValueError, match="two_stage.candidates must be a whole number >= 1, got 0"):
        train(compose([*base, "data.source.n_items=150", "two_stage.candidates=0"], tmp_path / "a"))
    # a retriever of another world: its catalogue lacks this world's items
    with pytest.raises(ValueError, match=r"cannot score this world's impressions \(.*unknown item id 'i1\d\d'\)"):
        train(compose([*base, "data.source.n_items=200"], tmp_path / "b"))
    with pytest.raises(FileNotFoundError, match="retriever: no model.ts"):
        train(compose([*base[:1], f"data.source.retriever={tmp_path}", *base[2:], "data.source.n_items=150"],
                      tmp_path / "c"))


def test_a_list_table_retriever_needs_the_id_columns(world_retriever, tmp_path):
    import pandas as pd

    from rankers.data.errors import DataError

    pd.DataFrame({"list_id": [1, 1, 2, 2], "item_id": ["i1", "i2", "i3", "i4"], "label": [1, 0, 0, 1],
                  "price": [1.0, 2.0, 3.0, 4.0]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError, match=r"t.csv.*missing column\(s\) \['user_id'\] \(the retriever scores"):
        train(compose(["experiment=elasticrank", "data=list_table", f"data.source.train={tmp_path / 't.csv'}",
                       f"data.source.test={tmp_path / 't.csv'}", "data.source.numeric=[price]",
                       f"data.source.retriever={world_retriever}"], tmp_path / "run"))
