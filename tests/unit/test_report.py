"""The deploy summary table and the JSON report."""

from __future__ import annotations

import json

from stackdeploy.report import render_table, write_report

ROWS = {
    "postgres": {"image": "stackdeploy/postgres:abc", "size": 214_000_000, "state": "running", "health": "healthy",
                 "check": "ok", "seconds_to_ready": 3.71, "build": None},
    "ollama": {"image": "stackdeploy/ollama-standin:def", "size": 105_000_000, "state": "running",
               "health": "starting", "check": "ok", "seconds_to_ready": None, "standin": True,
               "build": {"seconds": 1.2, "cached": 9, "steps": 10}},
    "creator-hub": {"image": "creatorstack/creator-hub:123", "size": None, "state": "running", "health": None,
                    "check": "GET /health answered 503", "seconds_to_ready": None, "build": None},
}


def test_table_separates_the_deploys_check_from_dockers_view():
    lines = render_table("h1", ROWS).splitlines()
    assert lines[0] == "stack on h1:"
    assert lines[1].split() == ["service", "image", "size", "check", "container", "ready", "s", "build"]
    rows = {line.split()[0]: line.split() for line in lines[3:6]}
    assert rows["postgres"][1:] == ["stackdeploy/postgres:abc", "214", "MB", "ok", "healthy", "3.7", "skipped"]
    assert "(STAND-IN)" in lines[4] and "ok" in rows["ollama"] and "starting" in rows["ollama"]
    assert "built 1.2s, 9/10 cached" in lines[4]
    assert rows["creator-hub"][2:5] == ["-", "FAILED", "running"]
    assert lines[-1] == "  creator-hub: GET /health answered 503"  # why it failed, under the table


def test_report_keeps_every_host_of_a_run(tmp_path):
    path = tmp_path / "last-report.json"
    write_report(path, "h1", {"postgres": ROWS["postgres"]}, run="T1", release="R1", changed=["postgres"], built=[])
    write_report(path, "h2", {"ollama": ROWS["ollama"]}, run="T1", release="R1", changed=[], built=[])
    report = json.loads(path.read_text())
    hosts = report["hosts"]
    assert set(hosts) == {"h1", "h2"} and hosts["h2"]["services"]["ollama"]["standin"] is True
    assert report["run"] == "T1" and report["changed"] == ["postgres@h1"]
    assert hosts["h1"]["release"] == "R1" and hosts["h1"]["changed"] == ["postgres"]


def test_a_new_run_that_changes_nothing_reports_nothing_changed(tmp_path):
    path = tmp_path / "last-report.json"
    write_report(path, "h1", {"postgres": ROWS["postgres"]}, run="T1", release="R1", changed=["postgres"],
                 built=["postgres"])
    write_report(path, "h1", {"postgres": ROWS["postgres"]}, run="T2", release="R1", changed=[], built=[])
    report = json.loads(path.read_text())
    assert report["run"] == "T2" and report["changed"] == []
    assert report["hosts"]["h1"]["changed"] == [] and report["hosts"]["h1"]["built"] == []
