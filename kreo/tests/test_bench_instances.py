"""The load test (bench/bench_instances.py, bench/locustfile.py) runs through
its own code path: a few seconds of two members against one web instance
and against two, on a PostgreSQL database, a Redis database and an S3
server of its own, every request type answered and none failed.

It starts its own servers, so it runs once, on the PostgreSQL leg.
"""

import os

import pytest

from bench import bench_instances

pytestmark = pytest.mark.skipif(
    os.environ.get("KREO_TEST_LEG", "postgres") != "postgres",
    reason="starts its own PostgreSQL database and servers: the postgres leg runs it",
)

TYPES = {
    ("sign-in form", "GET"),
    ("sign-in", "POST"),
    ("project list", "GET"),
    ("download", "GET"),
    ("upload", "POST"),
}


def test_two_members_sign_in_list_upload_and_download_on_one_and_two_instances():
    """Every request type is answered on one instance and on two, none
    fails, the one-instance figures come from one instance only, and with
    two both answer (the members' requests alternate between them)."""
    figures = bench_instances.measure(
        users=2, warmup=0, seconds=3, instances=(1, 2), require=tuple(TYPES)
    )

    assert bench_instances.errors(figures) == []
    for result in figures.values():
        assert set(result["types"]) >= {name for name, _method in TYPES}
        assert result["total"]["failures"] == 0
    assert figures[1]["served"]["web-a"] > 0
    assert figures[1]["served"]["web-b"] == 0
    assert figures[2]["served"]["web-a"] > 0
    assert figures[2]["served"]["web-b"] > 0
    rows = bench_instances.rows(figures)
    assert {row["verdict"] for row in rows} == {"PASS"}
    totals = [row for row in rows if row["request"] == "total"]
    assert [row["instances"] for row in totals] == ["1 instance", "2 instances"]
    assert totals[1]["rps_vs_one"] > 0


def test_a_failed_request_fails_the_benchmark():
    """One failed upload makes its row and the total FAIL, and is listed."""
    ok = {"requests": 10, "failures": 0, "rps": 5.0, "p50_ms": 20, "p95_ms": 40}
    bad = {**ok, "failures": 1}
    figures = {
        1: {
            "users": 2,
            "seconds": 2.0,
            "served": {"web-a": 20, "web-b": 0},
            "types": {"project list": ok, "upload": bad},
            "total": {**ok, "requests": 20, "failures": 1},
            "errors": [{"request": "upload", "error": "refused (503)", "count": 1}],
        }
    }

    verdicts = {row["request"]: row["verdict"] for row in bench_instances.rows(figures)}

    assert verdicts == {"total": "FAIL", "project list": "PASS", "upload": "FAIL"}
    assert bench_instances.errors(figures) == [
        "1 instance(s): 1 x upload: refused (503)"
    ]
