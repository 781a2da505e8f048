"""What counts as "Redis is unavailable", and the retry backoff."""

from __future__ import annotations

import pytest
from redis import exceptions as rex

from app.coordination.redis_client import unavailable
from app.coordination.retry import Backoff
from app.errors import StoreUnavailable


@pytest.mark.parametrize(
    "error",
    [
        rex.ConnectionError("refused"),
        rex.BusyLoadingError("loading"),
        rex.TimeoutError("slow"),
        rex.ReadOnlyError("replica"),
        rex.ClusterDownError("down"),
        rex.TryAgainError("again"),
        ConnectionRefusedError(),
        TimeoutError(),
        OSError("unreachable"),
    ],
)
def test_unreachable_errors_become_store_unavailable(error: Exception) -> None:
    with pytest.raises(StoreUnavailable) as exc, unavailable():
        raise error
    assert exc.value.status == 503 and exc.value.__cause__ is error


@pytest.mark.parametrize("error", [rex.ResponseError("WRONGTYPE"), ValueError("bug")])
def test_other_errors_pass_through(error: Exception) -> None:
    with pytest.raises(type(error)), unavailable():
        raise error


def test_backoff_is_jittered_exponential_and_capped() -> None:
    backoff = Backoff(0.1, 1.0)
    delays = [backoff.next() for _ in range(8)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(0.5 <= d <= 1.0 for d in delays[4:])
    backoff.reset()
    assert backoff.next() <= 0.1
