"""Old index versions let go of their files at once, over HTTP too (not at the next garbage collection)."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable, Iterator

import httpx
import pytest
from citeqa.eval.bench.live_server import serve_app as serve
from citeqa.service.api import create_app
from citeqa.service.qa.pipeline import QAPipeline

from tests.service.api.conftest import API_KEY

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {API_KEY}"}


def deleted_index_files_open() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += "store.sqlite" in target and target.endswith("(deleted)")
    return count


@pytest.fixture
def no_gc() -> Iterator[None]:
    """Without the cyclic collector, only what is freed at once is freed: the test cannot pass by luck."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_upload_delete_cycles_leave_no_deleted_index_files_open(
    make_pipeline: Callable[..., QAPipeline], no_gc: None
) -> None:
    pipeline = make_pipeline(api_key=API_KEY)
    with serve(create_app(pipeline=pipeline)) as url:
        before = deleted_index_files_open()
        for i in range(8):
            files = {"file": ("cycle.txt", f"Cycle {i}: the harbor gate opens at dawn.".encode())}
            assert httpx.post(f"{url}/v1/documents", headers=AUTH, files=files, timeout=60).status_code == 201
            assert httpx.delete(f"{url}/v1/documents/cycle.txt", headers=AUTH, timeout=60).status_code == 200
            assert httpx.get(f"{url}/v1/documents/cycle.txt").status_code == 404
        assert deleted_index_files_open() - before <= 1  # at most the one a worker thread still holds
