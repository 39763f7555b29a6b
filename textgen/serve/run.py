"""Binding and running the app: loopback by default, a graceful stop on SIGTERM.

``bind(host, port)`` opens the listening socket (``port`` 0 picks a free port; the socket says
which), so the address is known, and any error reported, before uvicorn starts. ``is_loopback``
says whether a host is reachable only from this machine; ``textgen serve`` refuses to bind any
other without a token. ``serve(app, sock)`` runs uvicorn until SIGTERM or SIGINT: it stops
accepting, lets the requests in flight finish (their own timeout bounds that), then returns, so
the process exits 0.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from typing import Any


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable only from this machine.
    Names other than ``localhost`` are not trusted to be: they may resolve to anything."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``OSError`` when it cannot be had)."""
    host = host.strip("[]")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(2048)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def serve(app: Any, sock: socket.socket, *, graceful_timeout: float | None = None, verbose: bool = False) -> None:
    """Run ``app`` on ``sock`` until SIGTERM/SIGINT, then shut down gracefully (see the module
    docstring). Returns normally after a signal: uvicorn re-raises the signals it caught once it is
    done, which here reach a handler that does nothing instead of killing the process."""
    import uvicorn

    config = uvicorn.Config(
        app, lifespan="on", log_level="info" if verbose else "warning", access_log=verbose,
        timeout_graceful_shutdown=graceful_timeout, timeout_keep_alive=5, server_header=False,
    )
    server = uvicorn.Server(config)
    handled = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, _stopped) for sig in handled}
    try:
        server.run(sockets=[sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _stopped(signum: int, frame: object) -> None:
    """A signal uvicorn re-raises after its graceful shutdown: the stop is already done."""
