"""Shared fixtures. `infra`: the Kafka and PostgreSQL servers of this test session (see tests/infra.py)."""

import pytest_asyncio

try:  # tests/ is a package (run from the repo root) or only a rootdir on sys.path (pytest's prepend mode)
    from tests.infra import Infra, provide_infra
except ModuleNotFoundError:
    from infra import Infra, provide_infra


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def infra() -> Infra:
    async with provide_infra() as servers:
        yield servers
