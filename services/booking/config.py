"""Booking's settings: `BOOKING_<NAME>` in the environment (or `Settings.extra[<NAME>]`).

TIMEZONE               Europe/Belgrade  what "today" and "the end of the day" mean
SCHEDULE_ENABLED       true             the nightly scheduling run
SCHEDULE_AT            02:00            when it starts (local time)
SCHEDULE_HORIZON_DAYS  14               how many days (from tomorrow) it books
NO_SHOW_ENABLED        true             marking no-shows after each day
NO_SHOW_INTERVAL       600              seconds between no-show sweeps
ALLOW_ANYWHERE         true             book outside the citizen's district when
                                        nothing closer is free (scheduling runs only)
COMMIT_BATCH           1000             bookings per transaction (one site and product,
                                        one or more days)
COMMIT_CONCURRENCY     4                SiteDay transactions in flight per run
RUNS_INTERVAL          2                seconds between the runs worker's looks for
                                        queued runs (a POST wakes it at once) and
                                        interrupted ones
IN_PROCESS_RUN_MAX     1000             a scheduling run whose waiting list is at most
                                        this many citizens runs in the service's
                                        process, a bigger one in a worker process
                                        (runworker.py); 0 sends every run to a worker.
                                        Why 1,000: a worker's start costs about 0.5 s
                                        (an interpreter and the service's imports),
                                        while 1,000 bookings cost the service's process
                                        about 0.15 s of CPU (about 130 us of booking's
                                        CPU per booking in the worker, plus the plan at
                                        about 100,000 citizens/s), shared with the API
                                        for that long only (the load test's day books
                                        429 appointments over all its runs)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

from immunreg.config import Settings, setting

SERVICE = "booking"
BELGRADE = ZoneInfo("Europe/Belgrade")


def _value(settings: Settings, name: str, default: str) -> str:
    return settings.extra.get(name) or setting(name, SERVICE) or default


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class BookingConfig:
    timezone: ZoneInfo = BELGRADE
    schedule_enabled: bool = True
    schedule_at: time = time(2, 0)
    schedule_horizon_days: int = 14
    no_show_enabled: bool = True
    no_show_interval: float = 600.0
    allow_anywhere: bool = True
    commit_batch: int = 1000
    commit_concurrency: int = 4
    runs_interval: float = 2.0
    in_process_run_max: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> BookingConfig:
        return cls(
            timezone=ZoneInfo(_value(settings, "TIMEZONE", "Europe/Belgrade")),
            schedule_enabled=_flag(_value(settings, "SCHEDULE_ENABLED", "true")),
            schedule_at=time.fromisoformat(_value(settings, "SCHEDULE_AT", "02:00")),
            schedule_horizon_days=int(_value(settings, "SCHEDULE_HORIZON_DAYS", "14")),
            no_show_enabled=_flag(_value(settings, "NO_SHOW_ENABLED", "true")),
            no_show_interval=float(_value(settings, "NO_SHOW_INTERVAL", "600")),
            allow_anywhere=_flag(_value(settings, "ALLOW_ANYWHERE", "true")),
            commit_batch=int(_value(settings, "COMMIT_BATCH", "1000")),
            commit_concurrency=int(_value(settings, "COMMIT_CONCURRENCY", "4")),
            runs_interval=float(_value(settings, "RUNS_INTERVAL", "2")),
            in_process_run_max=int(_value(settings, "IN_PROCESS_RUN_MAX", "1000")),
        )

    def now(self) -> datetime:
        return datetime.now(UTC).astimezone(self.timezone)

    def today(self) -> date:
        """Today where the sites are."""
        return self.now().date()
