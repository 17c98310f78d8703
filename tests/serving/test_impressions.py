"""The impression log: every /recommend response once, rotated without losing a line, never
blocking a request; /events joins a click to what was shown by request_id."""
import json
import time

import pandas as pd

from rankers.data.log import read_table
from rankers.serving.events import COLUMNS, EventLog
from rankers.serving.impressions import ImpressionLog


def _lines(log: ImpressionLog):
    return [json.loads(line) for f in log.files() for line in f.read_text().splitlines()]


def test_rotation_loses_no_line_and_splits_none(tmp_path):
    log = ImpressionLog(tmp_path / "impressions.jsonl", max_bytes=2_000)
    for i in range(500):
        assert log.log(f"r{i}", f"u{i % 7}", "champion", "v1", [f"i{i}", "i2"], [2.5, 1.0])
        if i % 50 == 0:
            time.sleep(0.01)  # several writes, so several rotations
    log.close()
    rows = _lines(log)
    assert log.rotations >= 2 and len(log.files()) >= log.rotations  # (+1 live file, unless the last write rotated)
    assert [r["request_id"] for r in rows] == [f"r{i}" for i in range(500)]  # each once, in order
    assert rows[3] == {"request_id": "r3", "timestamp": rows[3]["timestamp"], "user_id": "u3", "variant": "champion",
                       "model_version": "v1", "items": ["i3", "i2"], "scores": [2.5, 1.0]}
    assert log.written == 500 and log.dropped == 0


def test_a_full_queue_drops_and_counts_instead_of_waiting(tmp_path, monkeypatch):
    log = ImpressionLog(tmp_path / "impressions.jsonl", queue_size=5)
    stall = []
    real = log._append

    def slow(data):  # a disk that has stopped answering
        while not stall:
            time.sleep(0.005)
        real(data)
    monkeypatch.setattr(log, "_append", slow)
    accepted = [log.log(f"r{i}", "u1", "champion", "v1", ["i1"], [1.0]) for i in range(100)]
    assert log.dropped == accepted.count(False) > 0
    stall.append(True)
    log.close()
    assert log.written == accepted.count(True) == len(_lines(log))


def test_recommend_logs_what_it_returned_and_events_join_by_request_id(client_factory, tmp_path):
    c = client_factory()
    answers = [c.post("/recommend", json={"user_id": u, "k": 4}).json() for u in ("u1", "u2", "u3")]
    assert len({a["request_id"] for a in answers}) == 3
    shown = answers[1]
    r = c.post("/events", json={"user_id": "u2", "item_id": shown["items"][2], "event": "purchase",
                                "request_id": shown["request_id"]})
    assert r.status_code == 200
    assert c.post("/events", json={"user_id": "u2", "item_id": "i1", "event": "view",
                                   "request_id": "=evil"}).status_code == 422
    c.app.state.service.impressions.close()  # what the service does at shutdown
    imp = pd.DataFrame([json.loads(line) for line in (tmp_path / "impressions.jsonl").read_text().splitlines()])
    assert list(imp["request_id"]) == [a["request_id"] for a in answers]
    assert imp["items"].tolist() == [a["items"] for a in answers] and imp["scores"].tolist() == [a["scores"] for a in answers]
    assert set(imp["variant"]) == {"champion"} and list(imp["model_version"]) == [a["model_version"] for a in answers]
    ev = read_table(tmp_path / "events.csv")
    joined = ev.merge(imp, on="request_id")
    assert len(joined) == 1 and joined["items"][0].index(joined["item_id"][0]) == 2  # bought at position 2
    assert 'rankers_impressions_total{variant="champion"} 3.0' in c.get("/metrics").text


def test_an_event_log_of_the_older_layout_is_set_aside_not_mixed(tmp_path):
    old = tmp_path / "events.csv"
    old.write_text("user_id,item_id,event,timestamp,variant,model_version\nu1,i1,view,1.0,champion,v1\n")
    log = EventLog(old)
    log.append("u2", "i2", "cart", 2.0, "champion", "v1", "r9")
    assert old.read_text().splitlines() == [",".join(COLUMNS), "u2,i2,cart,2.0,champion,v1,r9"]
    aside = [p for p in tmp_path.iterdir() if p.name != "events.csv"]
    assert len(aside) == 1 and "u1,i1,view" in aside[0].read_text()


def test_a_bad_impression_log_path_or_size_is_refused_at_start(tmp_path):
    import pytest
    from rankers.serving.config import ServeSettings

    with pytest.raises(ValueError, match=r"impressions_path .* is a directory"):
        ImpressionLog(tmp_path)
    with pytest.raises(ValueError, match=r"max_bytes and queue_size must be >= 1, got 0, 10"):
        ImpressionLog(tmp_path / "i.jsonl", max_bytes=0, queue_size=10)
    with pytest.raises(ValueError, match=r"impressions_max_bytes must be >= 1, got 0"):
        ServeSettings(model_path="m", impressions_max_bytes=0)
    assert not list(tmp_path.iterdir())  # nothing written
