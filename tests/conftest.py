"""Fixtures shared by the test modules."""

import asyncio
import os

import pytest

# Some test modules import langchain_core, which (in "auto") switches the classes that
# add_messages builds for every later test in the process. The suite pins waypoint's own;
# the LangChain tests ask for LangChain's with the `langchain_messages` fixture.
os.environ["WAYPOINT_MESSAGE_CLASSES"] = "waypoint"


@pytest.fixture
def langchain_messages():
    """LangChain's message classes in state, as for code that imports LangChain."""
    from waypoint.interop.langchain_messages import set_message_classes

    set_message_classes("auto")
    yield
    set_message_classes(None)


@pytest.fixture(params=["sync", "async"])
def run(request):
    """Run a compiled graph with ``invoke`` (in a worker thread, no running loop) or ``ainvoke``."""

    async def _run(graph, inp, config=None):
        if request.param == "sync":
            return await asyncio.to_thread(graph.invoke, inp, config)
        return await graph.ainvoke(inp, config)

    return _run
