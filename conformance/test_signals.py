"""Signals (docs/DESIGN.md §2 fault 2, docs/PROTOCOL.md §3): SIGTERM and SIGINT stop the server
gracefully with exit 0 (stop accepting, flush what is buffered for at most
the close timeout, close all); SIGUSR1, SIGUSR2, SIGCHLD and SIGWINCH change
nothing, even in a storm during traffic. Tests that stop the server
themselves check STATS consistency before the signal.
"""

import signal
import threading
import time
import zlib

import pytest

from evltest import check_pattern, listen_backlog, ready, wait_for

STOP_SIGNALS = [signal.SIGTERM, signal.SIGINT]
OTHER_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGWINCH)


def _consistent(srv):
    st = srv.stats()
    assert st["accepted"] - st["closed"] == st["conns"], st
    return st


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=["TERM", "INT"])
def test_stop_signal_under_load_exit_0(start_server, sig):
    """TERM/INT while the server is busy: a BLAST streaming to a fast reader,
    a BLAST stalled, a SINK being fed, idle clients. The server stops
    within its close timeout (--close-timeout 500; 5 s allowed for ASan and
    a loaded machine) and exits 0; the fast reader's bytes up to the stop
    are the pattern, and every client sees the close.
    Seed fault: 2 (only TERM/INT stop the loop)."""
    srv = start_server("--close-timeout", "500", "--sndbuf", "65536")
    idle = ready(srv, 3)
    stalled = srv.connect(rcvbuf=65536)
    stalled.send(f"BLAST {1 << 40} 4\n")
    fast = srv.connect()
    fast.send(f"BLAST {1 << 40} 5\n")
    sink = srv.connect()
    sink.send(f"SINK {1 << 40}\n" + "k" * 100000)
    got = bytearray()

    def read_fast():
        while True:
            try:
                data = fast.sock.recv(1 << 20)
            except OSError:
                return
            if not data:
                return
            got.extend(data)

    t = threading.Thread(target=read_fast)
    t.start()
    time.sleep(0.3)
    _consistent(srv)
    t0 = time.monotonic()
    srv.send_signal(sig)
    rc = srv.wait(10)
    took = time.monotonic() - t0
    t.join(10)
    assert rc == 0, f"exit {rc}: {srv.stderr()[-2000:]}"
    assert took < 5, f"the stop took {took:.1f} s with a 0.5 s close timeout"
    assert len(got) > 1 << 20
    check_pattern(bytes(got[:8 << 20]), 5)
    for c in idle + [stalled, sink]:
        assert c.closed_by_peer(5)


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=["TERM", "INT"])
def test_stop_signal_flushes_pending_output(start_server, sig):
    """Graceful stop: 600 KB of ECHO replies are asked for by a client that
    has not read them when TERM/INT arrives (and a second one during the
    flush); the kernel holds ~150 KB of them, the server the rest. The
    client then reads every reply, complete and in order, and EOF; the
    server exits 0 after it.
    Seed fault: none: the graceful stop."""
    srv = start_server("--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    c.send("".join(f"ECHO {i:05d} {'f' * 990}\n" for i in range(600)))
    # Every command answered (none left unread: a stop discards unread
    # input, as evl_close does) and more replies pending than the kernel
    # buffers can take: only then is "every reply arrives" the stop's duty.
    # Waiting for the pending bytes alone raced the server's one command per
    # iteration: a stop in the middle left ~300 commands unanswered, and the
    # test failed about one run in four.
    wait_for(lambda: (lambda st: st["rbuf_bytes"] == 0 and st["wbuf_bytes"] > 128 << 10)(srv.stats()),
             timeout=5, what="every command answered, replies pending in the server")
    _consistent(srv)
    srv.send_signal(sig)
    time.sleep(0.1)
    srv.send_signal(sig)  # a second stop request changes nothing
    assert srv.alive(), "the server exited with replies still pending"
    for i in range(600):
        assert c.readline(10) == f"{i:05d} {'f' * 990}", f"reply {i}"
    assert c.read_eof(10, graceful=True) == b""
    assert srv.wait(10) == 0


def test_sigterm_stops_accepting(start_server):
    """After SIGTERM the server accepts nobody: while it still flushes a
    stalled client (close timeout 3 s), a new client's PING gets no answer
    (0.5 s), and the server exits 0 when the stalled client has read.
    Seed fault: none: the graceful stop."""
    srv = start_server("--sndbuf", "65536", "--close-timeout", "3000")
    c = srv.connect(rcvbuf=65536)
    c.send(("ECHO " + "a" * 995 + "\n") * 300)
    wait_for(lambda: srv.stats()["wbuf_bytes"] > 0, timeout=5, what="replies pending")
    # Every command handled before the stop begins: input still unread then
    # is never answered (a closing connection's input is discarded), so
    # wait until the pending replies stop growing (the server answers one
    # command per iteration; a fresh-check run once sent SIGTERM after 240).
    seen = [-1]

    def settled():
        w = srv.stats()["wbuf_bytes"]
        same, seen[0] = w == seen[0], w
        time.sleep(0.05)
        return same

    wait_for(settled, timeout=5, what="the pending replies to stop growing")
    _consistent(srv)
    srv.send_signal(signal.SIGTERM)
    time.sleep(0.1)
    late = None
    try:
        late = srv.connect(rcvbuf=65536)  # refused once the stop began (test_stop.py)
        late.send("PING\n")
        late.closed_by_peer(0.5)  # keeps what arrived in late.buf
    except OSError:
        pass  # refused or reset: not served either
    assert late is None or b"PONG" not in late.buf, "a connection was served after SIGTERM"
    # "No PONG within 0.5 s" alone is no proof: a server that accepted the
    # connection and then dropped or ignored it shows the same. Positive
    # proof: the connect was refused, or the connection still waits in the
    # kernel's accept queue, or nothing listens any more.
    if late is not None:
        backlog = listen_backlog(srv)
        assert backlog is None or backlog >= 1, \
            f"the late connection left the accept queue ({backlog} waiting): the server accepted it"
    assert c.read_exact(996 * 300, timeout=10) == (b"a" * 995 + b"\n") * 300
    assert c.read_eof(10, graceful=True) == b""
    assert srv.wait(10) == 0


def test_signal_storm_during_traffic(start_server):
    """Fault 2. A thread sends USR1/USR2/CHLD/WINCH every half millisecond
    while a 32 MiB BLAST, a 16 MiB SINK and 2 000 pipelined ECHOs run: every
    byte is right, nothing is lost to an interrupted call, and the server
    exits 0 afterwards.
    Seed fault: 2."""
    srv = start_server()
    stop = threading.Event()
    sent = [0]

    def storm():
        while not stop.is_set():
            for sig in OTHER_SIGNALS:
                srv.send_signal(sig)
                sent[0] += 1
            time.sleep(0.0005)

    t = threading.Thread(target=storm)
    t.start()
    try:
        a, b, e = srv.connect(), srv.connect(), srv.connect()
        a.send(f"BLAST {32 << 20} 77\nPING\n")
        payload = bytes((i * 7) & 0xff for i in range(1 << 16)) * 256
        sender = threading.Thread(target=b.send, args=(f"SINK {len(payload)}\n".encode() + payload,))
        sender.start()
        e.send("".join(f"ECHO {i}\n" for i in range(2000)))
        check_pattern(a.read_exact(32 << 20, timeout=30), 77)
        assert a.readline() == "PONG"
        sender.join(30)
        assert b.readline(30) == f"SUNK {len(payload)} {zlib.crc32(payload):08x}"
        assert e.read_exact(sum(len(f"{i}\n") for i in range(2000)), timeout=30) == \
            "".join(f"{i}\n" for i in range(2000)).encode()
    finally:
        stop.set()
        t.join(10)
    assert sent[0] > 400, f"only {sent[0]} signals sent"
    assert srv.alive(), srv.stderr()[-2000:]
    srv.settled_stats()
    assert srv.stop() == 0
