"""bento/server/connections.py in-process: uvicorn's own access line is built only where its logger keeps it (the
limits of the protocol are tested against a real server, tests/service/test_connections.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest
import uvicorn
from uvicorn.server import ServerState

from bento.server.connections import BoundedProtocol


async def empty_app(scope, receive, send) -> None:
    """An ASGI app that is never called: the protocol is only built."""


@pytest.mark.parametrize(("level", "built"), [(logging.WARNING, False), (logging.INFO, True)])
def test_uvicorns_access_line_is_built_only_where_its_logger_keeps_it(core, monkeypatch, level, built):
    logger = logging.getLogger("uvicorn.access")
    monkeypatch.setattr(logger, "level", level)
    monkeypatch.setattr(logger, "handlers", [logging.NullHandler()])  # as BentoML's root handler: hasHandlers()
    logger.manager._clear_cache()  # isEnabledFor caches per level
    config = uvicorn.Config(empty_app, log_config=None)
    loop = asyncio.new_event_loop()
    try:
        protocol = BoundedProtocol(config=config, server_state=ServerState(), app_state={}, _loop=loop, core=core)
    finally:
        loop.close()
        logger.manager._clear_cache()
    assert protocol.access_log is built
