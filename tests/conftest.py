"""Fixtures shared by the test modules."""

import asyncio

import pytest


@pytest.fixture(params=["sync", "async"])
def run(request):
    """Run a compiled graph with ``invoke`` (in a worker thread, no running loop) or ``ainvoke``."""

    async def _run(graph, inp, config=None):
        if request.param == "sync":
            return await asyncio.to_thread(graph.invoke, inp, config)
        return await graph.ainvoke(inp, config)

    return _run
