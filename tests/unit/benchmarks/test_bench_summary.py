"""`make bench` ends with every headline figure beside its same-run baseline and target."""

from __future__ import annotations

from bench.summary import ROWS, table


def test_each_figure_stands_beside_its_baseline_and_target() -> None:
    results = {
        "foundation": {
            "eventstore_append": {"writers_8": {"appends_per_s": 777.0}},
            "pgbench_raw_insert": {"two_rows": {"tps": 2450.4}},
        },
        "coverage": {
            "citizens": 6_647_003,
            "queries": {"all": {"model": {"p99_ms": 21.5}, "scan": {"p99_ms": 512.0}}},
        },
        "http_rates": {
            "registrations": [
                {"achieved_per_s": 24.5, "p99_ms": 557.3, "floor_p99_ms": 45.0},
                {"achieved_per_s": 39.8, "p99_ms": 3539.9, "floor_p99_ms": 165.9},
            ]
        },
    }
    lines = table(results).splitlines()
    assert len(lines) == 2 + len(ROWS)
    append = next(line for line in lines if line.startswith("| event-store append"))
    assert "| 777 | pgbench 2-row tx 2,450 |" in append
    # The best rate reached, with the /healthz floor measured at that same rate.
    registration = next(line for line in lines if line.startswith("| registration over HTTP"))
    assert "39.8/s, p99 3,540 ms" in registration and "p99 166 ms" in registration
    assert ">= 1,500/s" in registration
    # What this run did not measure says so rather than showing a stale figure.
    coverage = next(line for line in lines if line.startswith("| coverage query"))
    assert "| 21.5 ms (6,647,003 citizens) | old scan of citizens 512 ms (6,647,003" in coverage
    dashboard = next(line for line in lines if line.startswith("| dashboard load"))
    assert dashboard.count("not measured") == 2
    rebuild = next(line for line in lines if line.startswith("| projection rebuild"))
    assert rebuild.count("not measured") == 2


def test_the_qr_row_shows_stored_downloads_beside_rendering_on_request() -> None:
    downloads = {
        "stored": {"per_second": 1234.5},
        "rendered_on_request": {"per_second": 88.0},
        "certificate_json": {"per_second": 1300.0},
    }
    results = {"certificates": {"downloads": downloads, "qr_png": {"per_second": 201.0}}}
    [qr] = [line for line in table(results).splitlines() if "QR image" in line]
    assert "| 1,234 | rendered on the request (before) 88/s" in qr
    assert "JSON record (floor) 1,300/s; render alone 201 PNG/s one core" in qr


def test_the_idle_row_shows_each_poll_interval_beside_postgresql_and_kafka() -> None:
    rounds = [
        {
            "relay_poll_interval_s": 0.1,
            "services_total_cpu_pct": 6.5,
            "cpu_pct_of_one_core": {"registration": 0.8, "postgresql": 1.4, "kafka": 4.7},
        },
        {
            "relay_poll_interval_s": 0.5,
            "services_total_cpu_pct": 3.7,
            "cpu_pct_of_one_core": {"registration": 0.4, "postgresql": 0.4, "kafka": 3.8},
        },
    ]
    [idle] = [
        line for line in table({"idle_cpu": {"rounds": rounds}}).splitlines() if "idle" in line
    ]
    assert "| poll 0.1 s: 6.5%; poll 0.5 s: 3.7% |" in idle
    assert (
        "poll 0.1 s: PostgreSQL 1.4%, Kafka 4.7%; poll 0.5 s: PostgreSQL 0.4%, Kafka 3.8%" in idle
    )
    [unmeasured] = [line for line in table({}).splitlines() if "idle" in line]
    assert unmeasured.count("not measured") == 2


def test_every_http_row_is_filled_by_what_make_bench_records() -> None:
    # `make bench` runs bench.http_rates with no `--event-loops`: it records "http_rates"
    # alone, so a row that needs anything else would say "not measured" after every run.
    step = {"achieved_per_s": 40.0, "p99_ms": 90.0, "floor_p99_ms": 12.0}
    results = {"http_rates": {"registrations": [step], "doses": [step]}}
    rows = [
        line
        for line in table(results).splitlines()
        if line.startswith(("| registration over HTTP", "| dose recording"))
    ]
    assert [row for row in rows if "not measured" in row] == []
    assert len(rows) == 2


def test_the_national_scheduling_row_shows_the_run_its_phases_and_the_pure_planner() -> None:
    run = {
        "citizens": 1_000_000,
        "booked": 643_861,
        "seconds": 54.266,
        "timings": {"load": 4.144, "plan": 7.372, "commit": 41.25},
        "api_during_run": {"p99_ms": 69.1},
        "consistent": True,
        "baseline_pure_planner": {"plan_seconds": 7.38, "load_seconds": 5.1},
    }
    [row] = [
        line
        for line in table({"booking_scheduling_national": run}).splitlines()
        if line.startswith("| scheduling run of 1,000,000")
    ]
    assert "| 54.266 s: 643,861 of 1,000,000 waiting booked" in row
    assert "(load / plan / commit 4.144 s / 7.372 s / 41.25 s), API p99 69.1 ms |" in row
    assert "| pure planner on the same input 7.38 s, its load 5.1 s |" in row
    assert "<= 60 s" in row and "INCONSISTENT" not in row
    # A run whose books did not balance says so beside its time.
    broken = table({"booking_scheduling_national": run | {"consistent": False}})
    assert "INCONSISTENT" in broken
    [unmeasured] = [line for line in table({}).splitlines() if "1,000,000 waiting through" in line]
    assert unmeasured.count("not measured") == 3
