"""The A/B read-out: rates per variant clustered by user, the winner named at 95%, the join by
request_id, and logs torn by a crash read up to their last complete line."""
import json
import re
import logging

import numpy as np
import pandas as pd
import pytest

from rankers.ab_report import main as ab_main
from rankers.data.errors import DataError
from rankers.production.abtest import readout
from rankers.production.logs import read_events, read_impressions
from rankers.serving.events import COLUMNS


def write_logs(root, rates, n_users=400, per_user=5, seed=0, torn=False):
    """Impression and event logs in the service's formats: each user sees one variant (by user
    parity) ``per_user`` times; an impression is clicked with its variant's rate (a view of its
    second item), and a click becomes a purchase half of the time."""
    rng = np.random.default_rng(seed)
    imp, ev = [], []
    for n in range(n_users * per_user):
        u = n % n_users
        variant = "challenger" if u % 2 else "champion"
        rid = f"r{n}"
        imp.append({"request_id": rid, "timestamp": 1000.0 + n, "user_id": f"u{u}", "variant": variant,
                    "model_version": variant + "-v1", "items": ["i1", "i2", "i3"], "scores": [3.0, 2.0, 1.0]})
        if rng.random() < rates[variant]:
            ev.append(["u%d" % u, "i2", "view", 1000.5 + n, variant, variant + "-v1", rid])
            if rng.random() < 0.5:
                ev.append(["u%d" % u, "i2", "purchase", 1000.7 + n, variant, variant + "-v1", rid])
    ev.append(["u0", "i9", "view", 5.0, "champion", "", "r0"])  # an item that was not shown: not attributed
    ev.append(["u0", "i1", "view", 6.0, "champion", "", ""])  # no request id
    root.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in imp)
    events = ",".join(COLUMNS) + "\n" + "".join(",".join(map(str, r)) + "\n" for r in ev)
    if torn:
        text += '{"request_id": "r-torn", "timest'
        events += "u1,i2,purc"
    (root / "impressions.jsonl").write_text(text)
    (root / "events.csv").write_text(events)
    return root / "impressions.jsonl", root / "events.csv", len(imp), len(ev)


def test_the_better_variant_is_named_with_a_confidence_interval(tmp_path):
    imp, ev, n_imp, n_ev = write_logs(tmp_path, {"champion": 0.10, "challenger": 0.20})
    r = readout(read_impressions(imp), read_events(ev))
    assert r.control == "champion" and r.impressions == {"challenger": n_imp // 2, "champion": n_imp // 2}
    assert r.users == {"challenger": 200, "champion": 200}
    click = next(c for c in r.comparisons if c.outcome == "click")
    assert click.winner == "challenger" and click.ci[0] < 0.10 < click.ci[1]
    assert abs(r.rates["champion"]["click"].value - 0.10) < 3 * r.rates["champion"]["click"].se + 1e-9
    # the funnel: a purchase is also a cart and a click
    for v in ("champion", "challenger"):
        assert r.rates[v]["purchase"].value == r.rates[v]["cart"].value <= r.rates[v]["click"].value
    assert r.attributed_events == n_ev - 2 and r.unattributed_events == 2


def test_equal_variants_have_no_winner_and_a_worse_one_loses(tmp_path):
    imp, ev, *_ = write_logs(tmp_path / "same", {"champion": 0.15, "challenger": 0.15}, seed=1)
    r = readout(read_impressions(imp), read_events(ev))
    assert [c.winner for c in r.comparisons if c.outcome == "click"] == [None]
    imp, ev, *_ = write_logs(tmp_path / "worse", {"champion": 0.20, "challenger": 0.05})
    r = readout(read_impressions(imp), read_events(ev))
    assert [c.winner for c in r.comparisons if c.outcome == "click"] == ["champion"]


def test_clustering_by_user_widens_the_interval_when_users_differ(tmp_path):
    # every impression of a user has the same outcome: 40 users of 25 impressions carry the
    # information of 40 draws, not 1,000
    imp = pd.DataFrame({"request_id": [f"r{n}" for n in range(2000)], "timestamp": np.arange(2000.0),
                        "user_id": [f"u{n % 80}" for n in range(2000)],
                        "variant": ["champion" if (n % 80) % 2 else "challenger" for n in range(2000)],
                        "model_version": "v", "items": [["i1"]] * 2000})
    clicked = imp[(imp.user_id.str[1:].astype(int) % 4) < 2]
    ev = pd.DataFrame({"user_id": clicked.user_id, "item_id": "i1", "event": "view", "grade": 1.0,
                       "timestamp": clicked.timestamp, "variant": clicked.variant, "model_version": "v",
                       "request_id": clicked.request_id})
    r = readout(imp, ev)
    rate = r.rates["champion"]["click"]
    naive = np.sqrt(rate.value * (1 - rate.value) / 1000)
    assert rate.se > 3 * naive


def test_torn_last_lines_are_left_out_with_a_warning(tmp_path, caplog):
    imp, ev, n_imp, n_ev = write_logs(tmp_path, {"champion": 0.1, "challenger": 0.2}, torn=True)
    with caplog.at_level(logging.WARNING):
        impressions, events = read_impressions(imp), read_events(ev)
    assert len(impressions) == n_imp and len(events) == n_ev
    assert sum("incomplete" in m for m in caplog.messages) == 2


def test_rotated_impression_files_are_read_with_the_live_one(tmp_path):
    imp, ev, n_imp, _ = write_logs(tmp_path, {"champion": 0.1, "challenger": 0.2})
    lines = imp.read_text().splitlines(keepends=True)
    (tmp_path / "impressions.20261202T000000-1.jsonl").write_text("".join(lines[:700]))
    imp.write_text("".join(lines[700:]))
    assert len(read_impressions(imp)) == n_imp


def test_a_broken_line_inside_a_log_names_file_and_line(tmp_path):
    imp, ev, *_ = write_logs(tmp_path, {"champion": 0.1, "challenger": 0.2})
    lines = imp.read_text().splitlines(keepends=True)
    lines[4] = "{not json\n"
    imp.write_text("".join(lines))
    with pytest.raises(DataError, match=r"impressions.jsonl.*line 5 is not a JSON object"):
        read_impressions(imp)
    imp.write_text(json.dumps({"request_id": "r1"}) + "\n")
    with pytest.raises(DataError, match=r"missing field\(s\) \['timestamp'"):
        read_impressions(imp)
    with pytest.raises(DataError, match="no impression log here"):
        read_impressions(tmp_path / "nothing.jsonl")


def test_ab_report_prints_the_read_out_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    imp, ev, *_ = write_logs(tmp_path, {"champion": 0.1, "challenger": 0.2})
    ab_main(["--impressions", str(imp), "--events", str(ev), "--plot", str(tmp_path / "ab.png")])
    out = capsys.readouterr().out
    assert "click    challenger - champion" in out and "challenger wins" in out
    assert (tmp_path / "ab.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".ab.png.*"))  # no temp file left
    with pytest.raises(SystemExit) as e:
        ab_main(["--impressions", str(tmp_path / "none.jsonl"), "--events", str(ev), "--no-plot"])
    assert e.value.code == 2


def test_ab_report_reads_out_a_time_window_and_names_a_bad_bound(tmp_path, capsys):
    imp, ev, n_imp, _ = write_logs(tmp_path, {"champion": 0.1, "challenger": 0.2})
    ab_main(["--impressions", str(imp), "--events", str(ev), "--no-plot", "--since", "1000", "--until", "1100"])
    out = capsys.readouterr().out
    assert "challenger            50" in out and "champion              50" in out  # 100 impressions of 2,000
    for bad, match in ((["--since", "tomorrow"], "--since must be a number"),
                       (["--since", "2000", "--until", "1000"], "--since .* must be before --until")):
        with pytest.raises(SystemExit) as e:
            ab_main(["--impressions", str(imp), "--events", str(ev), "--no-plot", *bad])
        assert e.value.code == 2
        assert re.search(match, capsys.readouterr().err)
