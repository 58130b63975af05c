"""The per-client rate limiter (token buckets) on a fake clock, and that it is off by default."""

from __future__ import annotations

import pytest
from citeqa.service.api.internal.guard import RateLimiter
from citeqa.service.settings import Settings
from fastapi.testclient import TestClient


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill_at_the_rate() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=3, clock=clock)
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.take("a")
    assert 0.99 <= wait <= 1.0  # one token a second
    assert limiter.take("b") == 0.0  # another address has its own bucket
    clock.now += 1.0
    assert limiter.take("a") == 0.0
    assert limiter.take("a") > 0
    clock.now += 100.0
    assert [limiter.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]  # refills up to the burst only
    assert limiter.take("a") > 0


def test_idle_clients_are_forgotten() -> None:
    clock = Clock()
    limiter = RateLimiter(per_minute=60, burst=2, clock=clock, max_clients=10)
    for n in range(10):
        limiter.take(f"10.0.0.{n}")
    clock.now += 5.0  # every bucket has refilled
    limiter.take("10.0.1.1")
    assert len(limiter) == 1


@pytest.mark.integration
def test_rate_limit_is_off_by_default(client: TestClient) -> None:
    assert Settings().rate_limit_per_minute == 0
    statuses = {client.get("/v1/documents").status_code for _ in range(60)}
    assert statuses == {200}
