"""Smoke tests of evl-testsrv (docs/PROTOCOL.md): every command and every flag, once.

Each test starts its own server (conftest.start_server), talks to it over
127.0.0.1 or a unix socket, and the fixture stops it with SIGTERM and
requires exit code 0 (a sanitizer report or a leak fails it).
"""

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
import zlib

import pytest

from evltest import assert_no_spin, assert_prompt, check_pattern, pattern, pattern_byte, wait_for

STATS_KEYS = ("conns accepted closed rejected emfile overflow_closed idle_closed "
              "close_timeouts wbuf_bytes wbuf_peak rbuf_bytes ticks iterations rss_kb").split()


def ready(srv, n=1, **kw):
    """n clients, each known to be accepted (a PING answered)."""
    cs = [srv.connect(**kw) for _ in range(n)]
    for c in cs:
        assert c.cmd("PING") == "PONG"
    return cs


# ---- commands ---------------------------------------------------------------

def test_ping(server):
    c = server.connect()
    assert c.cmd("PING") == "PONG"
    assert c.cmd("PING") == "PONG"


def test_echo_keeps_inner_spaces(server):
    c = server.connect()
    assert c.cmd("ECHO hello world") == "hello world"
    assert c.cmd("ECHO  two  spaces ") == " two  spaces "
    assert c.cmd("ECHO PING") == "PING"


def test_echo_bare_is_an_empty_line(server):
    c = server.connect()
    assert c.cmd("ECHO") == ""
    assert c.cmd("ECHO ") == ""
    assert c.cmd("PING") == "PONG"


@pytest.mark.parametrize("n,seed", [(16, 0), (1, 7), (256, 1), (70000, 255),
                                    (3 * 65536 + 17, 4294967295), (5 * 2**20 + 3, 123456)])
def test_blast_every_byte(server, n, seed):
    c = server.connect()
    c.send(f"BLAST {n} {seed}\nPING\n")
    data = c.read_exact(n)
    check_pattern(data, seed)
    assert c.readline() == "PONG", "the reply after BLAST must follow its last byte"


def test_commands_wait_for_a_streamed_blast(start_server):
    # The client stalls, so the BLAST ends in on_drain, long after the PING
    # behind it was seen and left in the buffer: it must still be answered.
    srv = start_server("--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    n = 4 << 20
    c.send(f"BLAST {n} 11\nPING\nECHO after\n")
    time.sleep(0.3)
    check_pattern(c.read_exact(n), 11)
    assert c.readline(5) == "PONG"
    assert c.readline(5) == "after"


def test_blast_pattern_formula():
    # The helper itself against docs/PROTOCOL.md §4's formula, byte by byte.
    for seed in (0, 3, 255, 4294967295):
        want = bytes(pattern_byte(i, seed) for i in range(70000))
        assert pattern(70000, seed) == want
        assert pattern(1000, seed, 65000) == want[65000:66000]


def test_blast_zero_and_largest(server):
    c = server.connect()
    c.send("BLAST 0 1\nPING\n")
    assert c.readline() == "PONG"
    assert c.cmd(f"BLAST {2**63} 0") == "ERR syntax"
    assert c.cmd(f"BLAST 1 {2**32}") == "ERR syntax"
    c.send(f"BLAST {2**63 - 1} 42\n")
    check_pattern(c.read_exact(1 << 20), 42)
    c.close()
    d = server.connect()
    assert d.cmd("PING") == "PONG"


def test_sink_one_byte_chunks(server):
    c = server.connect()
    payload = bytes(random.Random(1).randrange(256) for _ in range(300))
    c.send(f"SINK {len(payload)}\n")
    for b in payload:
        c.send(bytes([b]))
        time.sleep(0.001)  # TCP_NODELAY: each byte its own segment
    assert c.readline() == f"SUNK {len(payload)} {zlib.crc32(payload):08x}"
    assert c.cmd("PING") == "PONG"


def test_sink_large_pipelined(server):
    c = server.connect()
    payload = random.Random(2).randbytes(3 << 20)
    c.send(f"SINK {len(payload)}\n".encode() + payload + b"PING\nSINK 0\n")
    assert c.readline() == f"SUNK {len(payload)} {zlib.crc32(payload):08x}"
    assert c.readline() == "PONG"
    assert c.readline() == "SUNK 0 00000000"


def test_bcast_reaches_everyone(server):
    receivers = ready(server, 3)
    sender = server.connect()
    sender.send("BCAST hello  all\n")
    assert sender.readline() == "MSG hello  all"
    for r in receivers:
        assert r.readline() == "MSG hello  all"
        assert r.cmd("PING") == "PONG"
    assert server.stats()["bcast_msgs"] == 1


def test_bcast_follows_a_running_blast(start_server):
    srv = start_server("--sndbuf", "65536")
    r = srv.connect(rcvbuf=65536)
    n = 2 << 20
    r.send(f"BLAST {n} 9\n")
    time.sleep(0.3)  # the BLAST is running: r does not read
    s = srv.connect()
    assert s.cmd("BCAST news") == "MSG news"
    assert srv.stats()["outbox_bytes"] == len("MSG news\n")
    check_pattern(r.read_exact(n), 9)
    assert r.readline() == "MSG news"


def test_stats_keys_and_counters(server):
    cs = ready(server, 3)
    st = server.stats()
    for k in STATS_KEYS:
        assert isinstance(st.get(k), int), f"STATS lacks {k}: {st}"
    assert st["accepted"] - st["closed"] == st["conns"]
    assert st["conns"] == 4
    assert st["rss_kb"] > 0
    for c in cs:
        c.close()
    st = wait_for(lambda: (lambda s: s if s["conns"] == 1 else None)(server.stats()),
                  what="conns back to 1")
    assert st["accepted"] - st["closed"] == st["conns"]


def test_quit(server):
    c = server.connect()
    c.send("QUIT\nPING\n")
    assert c.readline() == "BYE"
    assert c.read_eof(graceful=True) == b"", "nothing after BYE"


def test_close_aborts(server):
    c = server.connect()
    c.send("CLOSE\nPING\n")
    assert c.read_eof() == b""
    assert server.connect().cmd("PING") == "PONG"


def test_err_syntax_keeps_connection(server):
    c = server.connect()
    for bad in ("BLAST x", "BLAST 1", "BLAST 1 2 3", "SINK -1", "SINK", "SINK 1x",
                "PING extra", "STATS now", "QUIT x", "CLOSE x", "BCAST"):
        assert c.cmd(bad) == "ERR syntax", bad
    assert c.cmd("PING") == "PONG"


def test_err_unknown(server):
    c = server.connect()
    for bad in ("FOO", "ping", "", " PING", "PINGPONG", "\x00"):
        assert c.cmd(bad) == "ERR unknown", repr(bad)
    assert c.cmd("PING") == "PONG"


def test_line_limit(server):
    c = server.connect()
    longest = "x" * (65536 - 5)
    assert c.cmd("ECHO " + longest) == longest
    assert c.cmd("ECHO " + longest + "\r") == longest, "the \\r is not part of the line"
    c.send("A" * 65537)
    assert c.readline() == "ERR too long"
    assert c.read_eof() == b""


def test_too_long_complete_line(server):
    c = server.connect()
    c.send("ECHO " + "y" * 65532 + "\n")
    assert c.readline() == "ERR too long"
    assert c.read_eof() == b""


def test_crlf(server):
    c = server.connect()
    c.send("PING\r\nECHO a b\r\nBLAST 3 0\r\n")
    assert c.readline() == "PONG"
    assert c.readline() == "a b"
    check_pattern(c.read_exact(3), 0)


def test_pipelined_and_half_close(server):
    c = server.connect()
    c.send("PING\n" * 500 + "ECHO last\nPIN")
    c.sock.shutdown(socket.SHUT_WR)
    data = c.read_eof()
    assert data == b"PONG\n" * 500 + b"last\n", "partial line at EOF is dropped"


def test_blast_to_a_fast_reader_shares_the_loop(server):
    # A reader that keeps up keeps pending under wbuf_low, so on_drain never
    # paces the BLAST: it must still yield (write_quantum per call) so that
    # other connections are served while it streams.
    fast, probe = ready(server, 2)
    n = 512 << 20
    got = []

    def reader():
        have = 0
        while have < n:
            data = fast.sock.recv(4 << 20)
            if not data:
                break
            have += len(data)
        got.append(have)

    fast.send(f"BLAST {n} 1\n")
    t = threading.Thread(target=reader)
    t.start()
    rtts = []
    while not got:
        t0 = time.monotonic()
        assert probe.cmd("PING") == "PONG"
        rtts.append(time.monotonic() - t0)
    t.join()
    assert got == [n]
    assert_prompt(rtts, "behind a BLAST")
    assert server.stats()["blast_yields"] > 0


def test_blast_to_a_half_closed_peer(start_server):
    # EOF after the request: the stream still completes, the command behind
    # it is still served, then the server closes.
    srv = start_server("--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    n = 3 << 20
    c.send(f"BLAST {n} 21\nPING\n")
    c.sock.shutdown(socket.SHUT_WR)
    time.sleep(0.3)
    check_pattern(c.read_exact(n), 21)
    assert c.read_eof(graceful=True) == b"PONG\n"


# ---- flags ------------------------------------------------------------------

def test_mode_echo(start_server):
    srv = start_server("--mode", "echo")
    c = srv.connect()
    assert c.cmd("PING") == "PING"
    payload = random.Random(3).randbytes(4 << 20)
    t = threading.Thread(target=c.send, args=(payload,))
    t.start()
    got = c.read_exact(len(payload), timeout=30)
    t.join()
    assert got == payload


def test_unix_socket(start_server, tmp_path):
    path = str(tmp_path / "srv.sock")
    srv = start_server("--unix", path)
    assert srv.path == path and srv.port is None
    c = srv.connect()
    assert c.cmd("PING") == "PONG"
    c.send("BLAST 100000 5\n")
    check_pattern(c.read_exact(100000), 5)
    c.close()
    assert srv.stop() == 0
    assert not os.path.exists(path), "the socket file is removed at exit"


def test_listen_host_port(start_server):
    srv = start_server("--listen", "127.0.0.1:0")
    assert srv.port > 0
    assert srv.connect().cmd("PING") == "PONG"


def test_max_conns(start_server):
    srv = start_server("--max-conns", "2")
    a, _ = ready(srv, 2)
    extra = srv.connect()
    assert extra.read_eof(5) == b"", "the connection beyond --max-conns is closed"
    st = json.loads(a.cmd("STATS"))
    assert st["rejected"] == 1 and st["conns"] == 2


def test_idle_timeout(start_server):
    srv = start_server("--idle-timeout", "300")
    c = srv.connect()
    assert c.cmd("PING") == "PONG"
    t0 = time.monotonic()
    assert c.read_eof(5) == b""
    took = time.monotonic() - t0
    assert 0.2 < took < 2.0, f"closed after {took:.2f} s, want about 0.3 (at most 0.6)"
    assert srv.stats()["idle_closed"] == 1


def test_tick_ms(start_server):
    srv = start_server("--tick-ms", "50")
    time.sleep(0.6)
    ticks = srv.stats()["ticks"]
    assert 5 <= ticks <= 20, f"{ticks} ticks in 0.6 s at 50 ms"


def test_close_timeout(start_server):
    srv = start_server("--close-timeout", "300")
    c = srv.connect()
    c.send("QUIT\n")
    assert c.readline() == "BYE"
    assert c.read_eof() == b""  # write side shut; the server waits for ours
    # c stays open: the lingering close ends at the timeout, not at 5 s.
    wait_for(lambda: srv.stats()["conns"] == 1, timeout=2.0, what="the QUIT connection closed")


def test_sndbuf(start_server):
    srv = start_server("--sndbuf", "65536")
    c = srv.connect()
    assert c.cmd("PING") == "PONG"
    out = subprocess.run(["ss", "-tmnH", "state", "established", f"sport = :{srv.port}"],
                         capture_output=True, text=True, check=True).stdout
    # The kernel doubles SO_SNDBUF: tb131072 in the socket's memory info.
    assert "tb131072," in out, out


def test_rbuf_max(start_server):
    srv = start_server("--rbuf-max", "4096")
    c = srv.connect()
    assert c.cmd("ECHO " + "z" * 3000) == "z" * 3000
    c.send("B" * 10000)  # a partial line that fills the read cap
    assert c.read_eof() == b"", "no ERR too long: rbuf_max closes it first"
    assert srv.stats()["overflow_closed"] == 1


def test_wbuf_max_closes_a_bcast_receiver(start_server):
    srv = start_server("--wbuf-max", "1M", "--sndbuf", "65536")
    (stalled,) = ready(srv, 1, rcvbuf=65536)
    sender = srv.connect()
    text = "m" * 32768
    for _ in range(100):  # 3.2 MB to a receiver that does not read
        assert sender.cmd("BCAST " + text) == "MSG " + text
    st = srv.stats()
    assert st["overflow_closed"] == 1 and st["bcast_overflow"] == 1, st
    assert st["conns"] == 2  # sender and the STATS connection
    assert stalled.closed_by_peer(5)


def test_bcast_outbox_cap_during_blast(start_server):
    srv = start_server("--wbuf-max", "1M", "--sndbuf", "65536")
    r = srv.connect(rcvbuf=65536)
    r.send(f"BLAST {64 << 20} 1\n")
    time.sleep(0.3)
    sender = srv.connect()
    text = "o" * 32768
    for _ in range(40):  # 1.3 MB of MSG lines held behind the BLAST
        assert sender.cmd("BCAST " + text) == "MSG " + text
    st = srv.stats()
    assert st["bcast_dropped"] == 1 and st["outbox_bytes"] == 0, st
    assert st["wbuf_peak"] < 1 << 20
    assert r.closed_by_peer(10)


def test_wbuf_high_stops_serving_a_non_reader(start_server):
    srv = start_server("--wbuf-high", "64K", "--wbuf-low", "16K", "--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # little in kernel buffers
    line = ("ECHO " + "e" * 995 + "\n").encode()
    stream = line * 16384  # 16 MB of replies asked for, none read
    c.sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 2
    while sent < len(stream) and time.monotonic() < deadline:
        try:
            sent += c.sock.send(stream[sent:sent + 65536])
        except BlockingIOError:
            time.sleep(0.05)
    assert sent < len(stream), "the server kept serving a client that reads nothing"
    st = srv.stats()
    assert st["wbuf_peak"] <= 64 * 1024 + 2 * len(line), st
    assert st["rbuf_bytes"] <= 1 << 20, st
    c.sock.setblocking(True)
    want = (b"e" * 995 + b"\n") * (sent // len(line))
    assert c.read_exact(len(want), timeout=30) == want


def test_wbuf_low_bounds_blast(start_server):
    srv = start_server("--wbuf-low", "16K", "--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    n = 8 << 20
    c.send(f"BLAST {n} 77\n")
    time.sleep(0.5)
    peak = srv.stats()["wbuf_peak"]
    assert peak <= 16 * 1024 + 64 * 1024, f"wbuf_peak {peak}: more than wbuf_low + one chunk"
    check_pattern(c.read_exact(n, timeout=30), 77)


def test_blast_stall_is_bounded(start_server):
    srv = start_server("--sndbuf", "65536")
    c = srv.connect(rcvbuf=65536)
    n = 64 << 20
    c.send(f"BLAST {n} 3\n")
    time.sleep(0.2)
    cpu0 = srv.cpu_seconds()
    time.sleep(2)  # the client stalls
    cpu = srv.cpu_seconds() - cpu0
    st = srv.stats()
    assert st["wbuf_peak"] <= 1 << 20, f"wbuf_peak {st['wbuf_peak']}: BLAST buffered ahead"
    assert cpu < 0.5, f"{cpu:.2f} s of CPU while the only client stalled"
    check_pattern(c.read_exact(n, timeout=60), 3)
    assert c.cmd("PING") == "PONG"


def test_fifo_two_writers(start_server, tmp_path):
    path = str(tmp_path / "in.fifo")  # the server makes it
    srv = start_server("--fifo", path)
    (c,) = ready(srv, 1)
    with open(path, "wb") as w:
        w.write(b"one\n")
    assert c.readline() == "MSG one"
    time.sleep(0.2)
    assert_no_spin(srv, "with no writer on the FIFO")
    with open(path, "wb") as w:
        w.write(b"two\nthree\npartial")
    assert c.readline() == "MSG two"
    assert c.readline() == "MSG three"
    # A FIFO shows no writer boundaries: only once the server has seen this
    # writer's EOF (and reopened) does the next writer start a new stream.
    wait_for(lambda: srv.stats()["fifo_reopens"] >= 2, what="the server to see EOF")
    with open(path, "wb") as w:
        w.write(b"four\n")
    assert c.readline() == "MSG four", "a partial line at the writer's close is dropped"
    st = srv.stats()
    assert st["fifo_lines"] == 4 and st["fifo_reopens"] >= 2, st


@pytest.mark.parametrize("flags", [
    ["--port", "70000"], ["--port", "x"], ["--port"], ["--mode", "nope"],
    ["--wbuf-low", "2M"], ["--wbuf-max", "1000"], ["--idle-timeout", "-1"],
    ["--tick-ms", "1e3"], ["--max-conns", "99999999999"], ["--sndbuf", "-5"],
    ["--rbuf-max", "0"], ["--listen", "nocolon"], ["--bogus"], ["stray"],
    ["--port", "0", "--unix", "/tmp/x.sock"],
])
def test_bad_flags_exit_2(start_server, flags):
    srv = start_server(*flags, expect_listen=False)
    assert srv.wait(10) == 2
    assert "usage:" in srv.stderr()


def test_help(start_server):
    srv = start_server("--help", expect_listen=False)
    assert srv.wait(10) == 0
    assert b"usage:" in srv.proc.stdout.read()


def test_port_in_use_exit_1(start_server):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        srv = start_server("--port", str(port), expect_listen=False)
        assert srv.wait(10) == 1
        assert "in use" in srv.stderr()
    finally:
        taken.close()


# ---- signals ----------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exit_0(start_server, sig):
    srv = start_server()
    ready(srv, 2)
    assert srv.stop(sig) == 0


def test_sigterm_with_idle_clients_connected(start_server):
    """SIGTERM with idle clients connected: exit 0 at once (was the
    stop-hang bug: evl_run slept in epoll_wait after its last close)."""
    srv = start_server("--tick-ms", "0")
    clients = ready(srv, 2)  # stay connected and idle through the stop
    srv.send_signal(signal.SIGTERM)
    rc = srv.wait(3)  # nothing to flush: the stop should be immediate
    for c in clients:
        c.close()
    assert rc == 0, "no exit within 3 s of SIGTERM with idle clients (killed)"


def test_sigterm_during_stalled_blast(start_server):
    srv = start_server("--sndbuf", "65536", "--close-timeout", "500")
    c = srv.connect(rcvbuf=65536)
    c.send(f"BLAST {1 << 30} 0\n")
    ready(srv, 1)
    t0 = time.monotonic()
    assert srv.stop() == 0
    assert time.monotonic() - t0 < 5, "the stop waited past the close timeout"


def test_other_signals_do_not_stop_it(server):
    (c,) = ready(server, 1)
    for _ in range(20):
        for sig in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCHLD):
            server.send_signal(sig)
        time.sleep(0.005)
    assert c.cmd("PING") == "PONG"
    assert_no_spin(server, "after the signals")
    assert server.alive()
