"""A stopping server refuses, not hangs: when a stop begins (SIGTERM) the
server closes its listening socket at once (the library removes the
listener and calls on_stop; the test server closes the fd there), so a
client that comes while the last connections drain gets ECONNREFUSED
immediately, instead of completing the handshake into the backlog, waiting,
and being reset when the process exits.
"""

import signal
import socket
import time

import pytest

from evltest import wait_for


@pytest.mark.parametrize("family", ["tcp", "unix"])
def test_stop_refuses_late_clients_at_once(start_server, tmp_path, family):
    """A stalled BLAST keeps the stopping server alive (close timeout 20 s).
    An idle client's EOF shows that the stop began (the server closes its
    listen fd before it closes any connection); a client connecting after
    that is refused within 1 s while the server still runs; the server
    exits 0 once the stalled client goes away.
    Seed fault: none (issue 12: the listen fd stayed open until exit)."""
    flags = ["--sndbuf", "65536", "--close-timeout", "20000"]
    if family == "unix":
        flags += ["--unix", str(tmp_path / "srv.sock")]
    srv = start_server(*flags)
    stalled = srv.connect(**({"rcvbuf": 65536} if family == "tcp" else {}))
    stalled.send(f"BLAST {1 << 30} 7\n")
    wait_for(lambda: srv.stats()["wbuf_bytes"] > 0, timeout=5, what="BLAST bytes pending")
    idle = srv.connect()
    assert idle.cmd("PING") == "PONG"

    srv.send_signal(signal.SIGTERM)
    assert idle.closed_by_peer(5), "the idle client was not closed by the stop"
    assert srv.alive(), "the server exited with a stalled BLAST pending"

    if family == "unix":
        late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        addr = srv.path
    else:
        late = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        addr = ("127.0.0.1", srv.port)
    late.settimeout(5)
    t0 = time.monotonic()
    try:
        with pytest.raises(ConnectionRefusedError):
            late.connect(addr)
            late.recv(1)  # connected: show whether it hangs or is reset
    finally:
        late.close()
    took = time.monotonic() - t0
    assert took < 1, f"refused only after {took:.1f} s"
    assert srv.alive(), "the stalled connection should still keep the server running"

    stalled.close()  # unread BLAST bytes: the server's send fails, it aborts
    assert srv.wait(10) == 0
