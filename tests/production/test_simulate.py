"""The simulated production loop, end to end at a small size: the service in its own process,
traffic with position bias, warm retraining, the gate, swaps under load, the A/B read-out."""
import numpy as np
import pytest

from rankers.data.synthetic import World, generate, users_frame
from rankers.production.simulate import Simulation, SimulationConfig


def test_the_simulated_users_are_the_generators_users():
    w = World(300, 80, 10, seed=3)
    tastes = w.user_tastes()
    _, users, _ = generate(300, 80, 10, seed=3)
    assert (tastes["age"] == users["age"].to_numpy()).all()
    table, _ = w.chunk(0)
    assert (users_frame(table)["country"].to_numpy() == users["country"].to_numpy()).all()


def test_position_bias_and_taste_shape_the_clicks():
    w = World(2000, 200, 10, seed=0)
    tastes = w.user_tastes()
    rng = np.random.default_rng(0)
    users = np.arange(2000)
    best = np.argsort(-w.affinity_all({k: v[:2000] for k, v in tastes.items()}), axis=1)
    top, bottom = best[:, :10], best[:, -10:]
    click_top, _, buy_top = w.react(tastes, users, top, rng)
    click_bottom, _, buy_bottom = w.react(tastes, users, bottom, rng)
    assert click_top.mean() > 2 * click_bottom.mean() and buy_top.mean() > 3 * buy_bottom.mean()
    per_position = w.react(tastes, users, np.repeat(top[:, :1], 10, axis=1), rng)[0].mean(0)
    assert per_position[0] > 1.5 * per_position[9]  # the same item, clicked less further down
    rows, items, code = w.browse(tastes, np.arange(50), 4.0, rng)
    assert len(rows) > 100 and set(np.unique(code)) <= {0, 1, 2} and rows.max() < 50


@pytest.mark.slow
def test_the_loop_runs_with_no_failed_request_and_no_lost_impression(tmp_path, capsys):
    cfg = SimulationConfig(workdir=str(tmp_path / "sim"), cycles=3, users=400, items=120, mean_views=15,
                           requests=150, random_cycle=2, ab_refused=True, impressions_max_bytes=16 << 10)
    sim = Simulation(cfg)
    results = sim.run()
    out = capsys.readouterr().out
    assert out.count("\n") >= 4 and "gate NDCG@10 diff" in out
    assert [r.cycle for r in results] == [1, 2, 3]
    assert sum(r.traffic.failed for r in results) == 0
    assert sim.requests_ok == sim.impressions_logged > 450 and sim.impression_files > 2  # rotated, none lost
    assert results[1].gate is not None and not results[1].gate.accepted  # the random candidate
    assert results[2].ab is not None and results[2].promoted is False  # it lost the A/B test, or the gate said no
    assert all(s < 60 for r in results for s in r.swaps)
    assert (tmp_path / "sim" / "deploy" / "gate-reports" / "v2.json").is_file()
    with pytest.raises(FileExistsError, match="not empty"):
        Simulation(cfg)
