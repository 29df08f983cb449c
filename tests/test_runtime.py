"""clifvqa_core.runtime: the offline switch's network probe (device and distributed are exercised by the
scorer, extraction and training tests)."""
from __future__ import annotations

import socket
import threading

from clifvqa_core import runtime


def test_network_reachable_open_and_closed_port():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        assert runtime.network_reachable(("127.0.0.1", port), timeout=5)
    assert not runtime.network_reachable(("127.0.0.1", port), timeout=5)  # closed now: refused


def test_network_reachable_does_not_wait_for_a_hanging_resolver(monkeypatch):
    """A resolver that never answers (no network, unreachable DNS server) counts as no network once the
    timeout is over; the probe does not wait for getaddrinfo, which has no timeout of its own."""
    release, returned = threading.Event(), threading.Event()

    def hanging_getaddrinfo(*args, **kwargs):
        release.wait(60)  # bounded, so a regression fails the test instead of hanging it
        returned.set()
        raise socket.gaierror("no answer")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_getaddrinfo)
    try:
        assert not runtime.network_reachable(("huggingface.invalid", 443), timeout=0.2)
        assert not returned.is_set()  # answered while the lookup was still blocked
    finally:
        release.set()


def test_one_workers_default_rule_for_every_command(monkeypatch):
    """train --workers defaulted to 4 on a 2-core machine (PyTorch warned once per split), others to 2."""
    import click

    import clifvqa_core.runtime as runtime
    from cli import main
    from train.config import TrainConfig

    for cores, want in ((1, 0), (2, 1), (3, 2), (16, 4)):
        monkeypatch.setattr(runtime, "cpu_cores", lambda c=cores: c)
        assert runtime.default_workers() == want and TrainConfig().workers == want

    def commands(group):
        for cmd in group.commands.values():
            yield from commands(cmd) if isinstance(cmd, click.Group) else [cmd]

    seen = [(c.name, p.name) for c in commands(main) for p in c.params if p.name in ("workers", "extract_workers")]
    assert len(seen) >= 6
    for cmd in commands(main):
        for p in cmd.params:
            if p.name in ("workers", "extract_workers"):
                assert p.default is runtime.default_workers, (cmd.name, p.name, p.default)
