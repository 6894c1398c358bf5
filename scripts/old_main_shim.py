"""Prepended to tests/conftest.py by scripts/security-on-old-main: today's
regression tests on bbad515, whose modules lived elsewhere. Nothing here is the daemon's
code: module aliases, the test front-end's header ids, and no wait for a log line
bbad515 never wrote."""

import contextlib
import sys
import types

import pytest

import pagefs.impl.host.launcher as _launcher
import pagefs.impl.host.options as _options
import pagefs.impl.transport.fuse_client as _fuse_client

_client = types.ModuleType("pagefs.impl.client")
_client.fuse_client = _fuse_client  # type: ignore[attr-defined]
_client.host_daemon = _launcher  # type: ignore[attr-defined]
sys.modules.update({"pagefs.impl.client": _client,
                    "pagefs.impl.client.fuse_client": _fuse_client,
                    "pagefs.impl.client.host_daemon": _launcher})
if not hasattr(_options, "default_fds_per_guest"):  # no default cap then: today's value
    _options.default_fds_per_guest = lambda nofile: max(1, min(65536, nofile // 4))


@contextlib.contextmanager
def _acting_as(self, uid, gid):  # noqa: ANN001, ANN202
    saved = self._ids
    self._ids = (uid, gid, saved[2])
    try:
        yield
    finally:
        self._ids = saved


if not hasattr(_fuse_client.FuseClient, "acting_as"):
    _fuse_client.FuseClient.acting_as = _acting_as


@pytest.fixture(autouse=True)
def _no_sandbox_line(monkeypatch, request):  # noqa: ANN001, ANN202
    """bbad515 logs no sandbox line: judge what follows without waiting for it."""
    module = request.module
    if module.__name__.endswith("test_sandbox") and hasattr(module, "wait_until"):
        real = module.wait_until
        monkeypatch.setattr(module, "wait_until", lambda cond, what, **kw: None
                            if what == "the sandbox line" else real(cond, what, **kw))
