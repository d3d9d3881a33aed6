"""The nine faults of the seed (docs/DESIGN.md §2, numbered 1-9): one scenario each
(two for fault 6), named test_faultN_*. Each re-creates the situation in
which the seed misbehaves and checks what a correct library does instead;
conformance/mutants/faultN_*.patch puts each fault back into a copy of lib/
and names the test here that must then fail.

Time bounds are generous on purpose (an ASan server on 2 busy cores): a
correct server meets them by an order of magnitude, a faulty one misses
them by much more (a spin uses ~1 CPU second per second, a stranded reply
never comes).
"""

import json
import resource
import signal
import socket
import subprocess
import threading
import time
import zlib

from evltest import (assert_no_spin, assert_server_not_reading, check_pattern, linger0_close,
                     push_until_blocked, ready, wait_for)

# ---- fault 1: EOF -------------------------------------------------------------

def test_fault1_eof_half_close_no_spin(start_server):
    """Fault 1 (EOF not handled: level-triggered EPOLLIN spins). A client
    asks for a stream it does not read yet and half-closes (SHUT_WR): while
    the server holds the pending stream, the EOF must not make it spin (CPU
    time flat over 1 s). Then the whole stream and the replies to the
    commands sent before EOF arrive, the server closes, and a later BCAST
    shows no trace of the closed connection (on_close ran: a server whose
    on_close was skipped would write to a freed connection).
    Seed fault: 1 (and a skipped on_close after EOF)."""
    srv = start_server("--sndbuf", "65536")
    other = srv.connect()
    assert other.cmd("PING") == "PONG"
    c = srv.connect(rcvbuf=65536)
    n = 8 << 20
    c.send(f"PING\nBLAST {n} 1\nECHO after the blast\nPING\nECHO partial")
    c.sock.shutdown(socket.SHUT_WR)
    assert c.readline() == "PONG"
    time.sleep(0.3)  # the BLAST fills the socket buffers and stalls
    assert_no_spin(srv, "with only a half-closed, stalled peer")
    check_pattern(c.read_exact(n, timeout=30), 1)
    assert c.read_eof(5, graceful=True) == b"after the blast\nPONG\n", "partial line at EOF is dropped"

    # The same without a stream: many commands, then EOF at once.
    d = srv.connect()
    d.send("ECHO x\n" * 300)
    d.sock.shutdown(socket.SHUT_WR)
    assert d.read_eof(5, graceful=True) == b"x\n" * 300
    assert_no_spin(srv, "after the half-closed peers left")
    assert other.cmd("BCAST still here") == "MSG still here"
    st = srv.settled_stats(conns=1, close_clients=False)
    assert st["closed"] >= 2


# ---- fault 2: signals -----------------------------------------------------------

def test_fault2_signals_do_not_stop(start_server):
    """Fault 2 (epoll_wait's EINTR ends the loop). SIGUSR1, SIGUSR2, SIGCHLD
    and SIGWINCH (do-nothing handlers without SA_RESTART in the test server,
    so each interrupts epoll_wait) are sent 100 times each, mostly while the
    server sleeps in epoll_wait, some during traffic: it keeps serving,
    does not spin, and exits 0 on SIGTERM afterwards.
    Seed fault: 2."""
    srv = start_server()
    (c,) = ready(srv, 1)
    sigs = (signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD, signal.SIGWINCH)
    cpu0, t0 = srv.cpu_seconds(), time.monotonic()
    for i in range(100):
        for sig in sigs:
            srv.send_signal(sig)
            time.sleep(0.001)  # let it go back to sleep in epoll_wait
        if i % 10 == 0:
            c.send("PING\nBLAST 100000 3\nPING\n")
            assert c.readline() == "PONG"
            check_pattern(c.read_exact(100000), 3)
            assert c.readline() == "PONG"
    assert srv.alive(), f"the server exited ({srv.proc.returncode}): {srv.stderr()[-2000:]}"
    assert c.cmd("ECHO still serving") == "still serving"
    # The storm itself costs real work (400 signals, 1 MB of BLAST): bound it
    # as a fraction of its wall time; then, with nothing left to do, a window
    # long enough that a loop left busy-polling by a signal is unmistakable
    # (the old check, "< 1.0 s of CPU" over a ~0.6 s storm, could not fail).
    storm_s = time.monotonic() - t0
    storm_cpu = srv.cpu_seconds() - cpu0
    # Measured: 0.00 s of CPU over a 0.45 s storm; the fault2_eintr_spins
    # mutant 0.39-0.41 s over 0.56-0.62 s.
    assert storm_cpu / storm_s < 0.3, f"{storm_cpu:.2f} s of CPU in a {storm_s:.2f} s signal storm"
    assert_no_spin(srv, "after the signal storm")
    srv.settled_stats()
    assert srv.stop() == 0


# ---- fault 3: EMFILE --------------------------------------------------------------

def test_fault3_emfile_no_spin_and_recovery(start_server):
    """Fault 3 (EMFILE on accept with the listen fd still readable: a busy
    loop). The server's fd limit is lowered with `prlimit --pid` so that it
    can hold only two connections more than it has; 10 more clients queue
    in the backlog. While saturated, its CPU time barely moves over 1 s and
    the failures are counted (emfile); as served clients close, the waiting
    ones are accepted and answered, and afterwards new connections are
    served again.
    Seed fault: 3."""
    srv = start_server()
    (admin,) = ready(srv, 1)
    # Only admin open (ready()'s STATS-free check), so the fd count is exact.
    wait_for(lambda: json.loads(admin.cmd("STATS"))["conns"] == 1, what="admin alone")
    room = 2
    limit = srv.fd_count() + room
    orig = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)
    subprocess.run(["prlimit", "--pid", str(srv.pid), f"--nofile={limit}:{limit}"], check=True)
    try:
        clients = [srv.connect() for _ in range(room + 10)]
        for c in clients:
            c.send("PING\n")
        served = wait_for(lambda: (lambda s: s if len(s) >= room else None)(
            [c for c in clients if _has_line(c)]), timeout=5, what=f"{room} clients served")
        time.sleep(0.2)  # saturated now: let it settle into whatever it does
        assert_no_spin(srv, "while out of fds (spin on accept)")
        st = json.loads(admin.cmd("STATS"))
        assert st["emfile"] >= 1, st
        assert st["conns"] == 1 + room, st
        served = [c for c in clients if _has_line(c)]
        assert len(served) == room, f"{len(served)} clients served with fds for {room}"

        # Recovery: each close frees an fd for a client in the backlog
        # (accept is retried after a short pause: 100 ms in this library).
        pending = list(clients)
        deadline = time.monotonic() + 15
        while pending:
            assert time.monotonic() < deadline, f"{len(pending)} clients never served"
            for c in [c for c in pending if _has_line(c)]:
                assert c.readline() == "PONG"
                c.close()
                pending.remove(c)
            time.sleep(0.01)
        assert srv.connect().cmd("PING") == "PONG"
        assert json.loads(admin.cmd("STATS"))["conns"] == 2
    finally:
        subprocess.run(["prlimit", "--pid", str(srv.pid), f"--nofile={orig[0]}:{orig[1]}"],
                       check=False)


def _has_line(c):
    """True if a complete line from the server is waiting on c (no wait)."""
    if b"\n" not in c.buf:
        c.sock.setblocking(False)
        try:
            c.buf += c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            pass
        finally:
            c.sock.setblocking(True)
    return b"\n" in c.buf


# ---- fault 4: pipelining ------------------------------------------------------------

def test_fault4_pipelined_not_stranded(server):
    """Fault 4 (one message per call strands pipelined requests). The test
    server consumes one command per on_read; commands that arrive together
    in ONE segment must all be answered without any further input: 2, then
    3 000 (15 KB, one loopback segment), then a mix with a SINK whose data
    and the commands behind it share the segment.
    Seed fault: 4."""
    c = server.connect()
    c.send("PING\nECHO two\n")
    assert c.readline(5) == "PONG"
    assert c.readline(5) == "two", "the second command of a segment was stranded"
    c.send("PING\n" * 3000)
    data = c.read_exact(5 * 3000, timeout=20)
    assert data == b"PONG\n" * 3000
    c.send("SINK 5\nhelloPING\nECHO end\n")
    assert c.readline(5) == f"SUNK 5 {zlib.crc32(b'hello'):08x}"
    assert c.readline(5) == "PONG"
    assert c.readline(5) == "end"


# ---- fault 5: hang-up with data unread -------------------------------------------------

def test_fault5_hup_data_delivered(start_server):
    """Fault 5 (EPOLLHUP/EPOLLERR close before the data is read). A client
    sends a BCAST and resets (SO_LINGER 0) at once, while the server is
    stopped (SIGSTOP), so the data and the reset reach it in one event
    (EPOLLIN|EPOLLHUP|EPOLLERR): the BCAST must still be processed, seen by
    another client's MSG line and in STATS. Repeated, and once with a
    plain close after a half-close (FIN) instead of the reset.
    Seed fault: 5."""
    srv = start_server()
    (watcher,) = ready(srv, 1)
    for i in range(5):
        c = srv.connect()
        assert c.cmd("PING") == "PONG"
        with srv.stopped():
            c.send(f"BCAST before reset {i}\n")
            linger0_close(c)
        assert watcher.readline(5) == f"MSG before reset {i}", \
            "data sent just before a reset was dropped"
    c = srv.connect()
    assert c.cmd("PING") == "PONG"
    with srv.stopped():
        c.send("BCAST before close\n")
        c.sock.shutdown(socket.SHUT_WR)
        c.close()
    assert watcher.readline(5) == "MSG before close"
    st = json.loads(watcher.cmd("STATS"))
    assert st["bcast_msgs"] == 6, st


# ---- fault 6: bounded buffers ------------------------------------------------------------

def test_fault6_rbuf_max_closes(start_server):
    """Fault 6, input side (unbounded read buffer). (a) A line longer than
    --rbuf-max 16K without a newline: the connection is closed as
    overflowed (no 'ERR too long': the 64 KiB line limit is never reached),
    counted in overflow_closed. (b) Commands pipelined behind a stalled
    BLAST are not consumed; a client pushing 48 MiB of them must be cut off
    near rbuf_max (rbuf_bytes bounded, then closed as overflowed), and the
    server's RSS must not grow with what the client pushed.
    Seed fault: 6 (input)."""
    srv = start_server("--rbuf-max", "16K", "--sndbuf", "65536")
    rss0 = srv.rss_kb()
    c = srv.connect()
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    assert c.cmd("PING") == "PONG"
    sent = push_until_blocked(c, b"A" * (1 << 20), seconds=5)
    got = c.read_eof(5)
    assert b"ERR too long" not in got, "rbuf_max must close it before the line limit"
    # 64K client send buffer + the server's initial receive window << 1 MiB
    assert sent < 1 << 20, "the server kept reading past rbuf_max"
    st = srv.stats()
    assert st["overflow_closed"] == 1, st

    b = srv.connect(rcvbuf=65536)
    b.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    b.send(f"BLAST {1 << 30} 5\n")
    time.sleep(0.2)  # stalled: the BLAST waits in the kernel and in wbuf
    sent = push_until_blocked(b, b"PING\n" * ((48 << 20) // 5), seconds=5)
    st = srv.stats()
    assert st["rbuf_bytes"] <= 16 << 10, st
    assert b.closed_by_peer(5), "a client over rbuf_max with nothing consumed stays open"
    st = srv.stats()
    assert st["overflow_closed"] == 2, st
    # The client's send buffer (64K) and the server's receive window (not
    # grown: the server stops reading) hold well under 1 MiB; 8 MiB is
    # generous, a server reading on would take all 48.
    assert sent < 8 << 20, f"the server took {sent >> 20} MiB of unconsumed input"
    # The server's RSS from /proc, not its STATS. Measured (4 runs, ASan):
    # 476-492 KiB of growth; a server reading on would hold 48 MiB. Bound
    # 2 MiB (~4x; it was 24 MiB).
    grown = srv.rss_kb() - rss0
    assert grown < 2 << 10, f"RSS grew by {grown} KiB"


def test_fault6_wbuf_high_pauses(start_server):
    """Fault 6, output side (no pause at wbuf_high). A client sends 16 MB of
    ECHO commands and reads nothing: the server must stop reading it once
    --wbuf-high 256K is pending (wbuf_peak stays near wbuf_high instead of
    growing with every request), and resume when the client reads: every
    reply then arrives, in order.
    Seed fault: 6 (output)."""
    srv = start_server("--wbuf-high", "256K", "--wbuf-low", "64K", "--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    line = ("ECHO " + "w" * 995 + "\n").encode()
    rss0 = srv.rss_kb()
    sent = push_until_blocked(c, line * 16384, seconds=5)
    # What the server really holds, seen from outside (its RSS), not only its
    # own wbuf_peak. Measured growth (ASan server): 2.1-5.3 MiB when it
    # pauses at 256K; 46-48 MiB with the fault6_no_wbuf_pause mutant.
    grown = srv.rss_kb() - rss0
    assert grown < 12 << 10, f"the server's RSS grew by {grown} KiB for a client that reads nothing"
    assert sent < len(line) * 16384, "the server served a client that reads nothing, unbounded"
    assert_server_not_reading(srv, c, what="paused at wbuf_high")
    st = srv.stats()
    assert st["wbuf_peak"] <= (256 << 10) + 2 * len(line), st
    assert st["rbuf_bytes"] <= 1 << 20, st
    got = c.read_exact(sent // len(line) * 996, timeout=60)
    assert got == (b"w" * 995 + b"\n") * (sent // len(line))


# ---- fault 7: tick under load --------------------------------------------------------------

def test_fault7_tick_under_load(start_server):
    """Fault 7 (on_tick only when epoll_wait times out). With --tick-ms 50
    and four clients streaming SINKs as fast as they can (more input than
    the server can take, so every epoll_wait finds sockets readable and
    never times out; with one stream the server sometimes catches up and
    finds nothing), STATS ticks still advance at about one per 50 ms.
    Seed fault: 7."""
    srv = start_server("--tick-ms", "50")
    clients = [srv.connect() for _ in range(4)]
    stop = threading.Event()
    errors = []

    pumped = [0]

    def pump(c):
        chunk = b"z" * (1 << 20)
        try:
            c.send(f"SINK {1 << 62}\n")
            while not stop.is_set():
                c.sock.sendall(chunk)
                pumped[0] += len(chunk)
        except OSError as e:
            if not stop.is_set():
                errors.append(e)

    threads = [threading.Thread(target=pump, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)  # the streams are running
        t0, st0, p0 = time.monotonic(), srv.stats(), pumped[0]
        time.sleep(1.5)
        t1, st1, p1 = time.monotonic(), srv.stats(), pumped[0]
    finally:
        stop.set()
        for c in clients:
            c.sock.shutdown(socket.SHUT_RDWR)
        for t in threads:
            t.join(10)
    assert not errors, errors
    # Ticks delivered: the server's own count of on_tick calls, not the
    # library's "ticks" (a tick counted but never delivered would pass that).
    assert st1["tick_calls"] == st1["ticks"], \
        f"the library counted {st1['ticks']} ticks, on_tick ran {st1['tick_calls']} times"
    ticks = st1["tick_calls"] - st0["tick_calls"]
    want = (t1 - t0) / 0.05
    iters = st1["iterations"] - st0["iterations"]
    # A third of the due ticks is generous (ASan, 2 cores shared with the
    # pumps); a loop that ticks only when idle gets ~0 here.
    assert ticks >= want / 3, \
        f"{ticks} ticks in {t1 - t0:.2f} s under load (want ~{want:.0f}; {iters} iterations)"
    assert ticks <= want * 1.5 + 2, f"{ticks} ticks in {t1 - t0:.2f} s: a burst"
    # The load ran, seen from the clients' side (not from the library's
    # iteration count): the server took their bytes all through the window.
    # Measured: 0.9-2.0 GiB in the 1.5 s; the floor is a quarter of the least.
    assert p1 - p0 > 256 << 20, f"only {(p1 - p0) >> 20} MiB pumped in the window: no load"


# ---- fault 8: SIGPIPE ------------------------------------------------------------------------

def test_fault8_reset_peer_no_sigpipe(start_server):
    """Fault 8 (a write to a reset peer raises SIGPIPE, which kills a C
    process; the test server keeps SIGPIPE's default action). 20 times: a
    client asks for a 64 MiB BLAST, half-closes (FIN: the server's socket
    is in CLOSE_WAIT, so a write after the reset fails with EPIPE, the case
    that raises SIGPIPE), reads some, then resets (SO_LINGER 0) with the
    stream pending; and 20 times the same without the FIN (ECONNRESET).
    The server stays alive and exits 0.
    Seed fault: 8."""
    srv = start_server("--sndbuf", "65536")
    (probe,) = ready(srv, 1)
    for i in range(40):
        c = srv.connect(rcvbuf=65536)
        c.send(f"BLAST {64 << 20} {i}\n")
        if i % 2 == 0:
            c.sock.shutdown(socket.SHUT_WR)
        # 2 MiB is more than every buffer in between holds, so the server has
        # written since it saw the FIN, and has bytes pending at the reset.
        check_pattern(c.read_exact(2 << 20), i)
        linger0_close(c)
        assert probe.cmd("PING") == "PONG", f"round {i}: no answer after a reset"
    assert srv.alive(), srv.stderr()[-2000:]
    st = srv.settled_stats(conns=1, close_clients=False)
    assert st["closed"] >= 40
    assert srv.stop() == 0


# ---- fault 9: stale events ---------------------------------------------------------------------

def test_fault9_stale_event_after_close_in_batch(start_server):
    """Fault 9 (a connection closed inside a batch leaves a stale event for
    itself or a reused fd later in the same batch). With the server stopped
    (SIGSTOP), a sender's BCAST goes first, then new clients connect, then
    stalled receivers send data: on SIGCONT one epoll batch holds the
    sender's event, the listener's, and the receivers' events after them.
    The BCAST overflows the receivers (--wbuf-max 32K) and closes them; the
    new clients may get their fds; the receivers' events later in the batch
    must touch neither freed memory (ASan) nor the new connections.
    Counters agree at the end: every receiver closed as overflowed.
    Seed fault: 9."""
    srv = start_server("--wbuf-low", "1K", "--wbuf-high", "32K", "--wbuf-max", "32K",
                       "--sndbuf", "4096")
    nrecv = 40
    receivers = ready(srv, nrecv, rcvbuf=4096)
    sender = srv.connect()
    assert sender.cmd("PING") == "PONG"
    text = "b" * 12000
    rounds = 0
    while srv.stats()["overflow_closed"] < nrecv:
        rounds += 1
        assert rounds <= 20, f"receivers still open after 20 BCASTs of 12 KB: {srv.stats()}"
        with srv.stopped():
            sender.send(f"BCAST {text}\n")
            newcomers = [srv.connect() for _ in range(3)]
            for r in receivers:
                try:
                    r.send("PING\n")
                except OSError:
                    pass  # closed in an earlier round
        assert sender.readline(10) == "MSG " + text
        for n in newcomers:
            # A stale receiver event delivered to a newcomer (fd reuse)
            # would show as a PONG here.
            got = n.cmd("ECHO fresh")
            if got.startswith("MSG "):  # accepted before the BCAST ran
                got = n.readline()
            assert got == "fresh", f"a new connection got {got[:40]!r}"
            n.close()
    assert srv.alive(), srv.stderr()[-3000:]
    st = srv.settled_stats(conns=1, close_clients=False)
    assert st["overflow_closed"] == nrecv and st["bcast_overflow"] == nrecv, st
    assert st["accepted"] == st["closed"] + 2, st  # the sender and STATS
