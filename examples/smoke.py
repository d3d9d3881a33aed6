#!/usr/bin/python3
"""Smoke tests of the examples, run by examples/install-check.sh against the
builds it made from the installed tree (shared and static).

    examples/smoke.py BINDIR [SUFFIX]

runs BINDIR/echo$SUFFIX, chat$SUFFIX and fifo$SUFFIX on 127.0.0.1 (port 0),
each for a few seconds at most; every process is stopped by its PID. Exit
status 0 when all pass; the first failure is printed.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

TIMEOUT = 10  # seconds, for any single wait: generous for a loaded machine


class Proc:
    """A started example: waits for its 'listening on 127.0.0.1 port N' line."""

    def __init__(self, *argv):
        self.err = tempfile.TemporaryFile()
        self.p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.err,
                                  stdin=subprocess.DEVNULL)
        line = self._line()
        assert " port " in line, f"{argv[0]}: no 'listening' line, got {line!r}: {self.stderr()}"
        self.port = int(line.split(" port ")[1].split(",")[0])

    def _line(self):
        out = b""
        deadline = time.monotonic() + TIMEOUT
        fd = self.p.stdout.fileno()
        os.set_blocking(fd, False)
        while not out.endswith(b"\n") and time.monotonic() < deadline:
            try:
                chunk = os.read(fd, 256)
            except BlockingIOError:
                time.sleep(0.01)
                continue
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace").strip()

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode(errors="replace")

    def stop(self):
        """SIGTERM by PID; the exit code (it must come within TIMEOUT)."""
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGTERM)
        try:
            return self.p.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()
            raise AssertionError(f"{self.p.args[0]} did not exit within {TIMEOUT} s of SIGTERM")

    def kill(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGKILL)
            self.p.wait()


def connect(port, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", port))
    return s


def read_until(s, want):
    got = b""
    while not got.endswith(want):
        chunk = s.recv(65536)
        assert chunk, f"EOF after {got[-200:]!r}, waiting for {want!r}"
        got += chunk
    return got


def nothing_within(s, seconds):
    """True if s stays silent (no byte, no EOF) for seconds."""
    s.settimeout(seconds)
    try:
        s.recv(1)
    except socket.timeout:
        return True
    finally:
        s.settimeout(TIMEOUT)
    return False


def cpu_seconds(pid):
    """User plus system CPU time of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_bad(argv, code, words):
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT)
    assert r.returncode == code, f"{argv}: exit {r.returncode}, want {code}: {r.stderr!r}"
    assert words.encode() in r.stderr, f"{argv}: stderr {r.stderr!r} lacks {words!r}"


def smoke_echo(exe):
    run_bad([exe, "x"], 2, "usage")
    srv = Proc(exe, "0")
    try:
        c = connect(srv.port)
        c.sendall(b"hello\nwor")
        assert read_until(c, b"hello\n") == b"hello\n"
        c.sendall(b"ld\n")
        assert read_until(c, b"world\n") == b"world\n"
        run_bad([exe, str(srv.port)], 1, "cannot listen")  # the port is busy
        assert srv.stop() == 0, srv.stderr()
        assert c.recv(1) == b"", "no EOF after the stop"
        c.close()
        try:
            connect(srv.port).close()
            raise AssertionError("a connection after exit was accepted")
        except ConnectionRefusedError:
            pass
    finally:
        srv.kill()


def smoke_chat(exe):
    run_bad([exe, "1", "2", "3"], 2, "usage")
    # 1 MiB: far above what b, which reads, can lag (the sender waits for b
    # every 128 lines, so a loaded machine cannot make b look slow); one that
    # never reads passes it after a few MB (its kernel buffers hold the rest).
    srv = Proc(exe, "0", str(1 << 20))
    try:
        a, b = connect(srv.port), connect(srv.port)
        ida = read_until(a, b"\n").split()[-1]
        read_until(b, b"\n")
        a.sendall(b"hi all\n")
        assert read_until(b, b"\n") == ida + b": hi all\n"
        assert nothing_within(a, 0.3), "the sender got its own line"

        # A slow receiver (small window, never reads) is dropped; b, which
        # reads, gets every line.
        slow = connect(srv.port, rcvbuf=4096)
        read_until(slow, b"\n")
        lines, step, body = 16000, 128, b"x" * 1000
        line = ida + b": " + body + b"\n"
        want = line * lines
        got = bytearray()

        def reader():
            b.settimeout(TIMEOUT)
            while len(got) < len(want):
                chunk = b.recv(1 << 20)
                if not chunk:
                    return
                got.extend(chunk)

        t = threading.Thread(target=reader)
        t.start()
        for sent in range(step, lines + 1, step):
            a.sendall((body + b"\n") * step)
            deadline = time.monotonic() + TIMEOUT
            while len(got) < sent * len(line) and t.is_alive():
                assert time.monotonic() < deadline, f"b stuck at {len(got)} bytes"
                time.sleep(0.001)
        t.join(TIMEOUT)
        assert bytes(got) == want, (f"b, which reads, got {len(got)} of {len(want)} bytes "
                                    f"(dropped as slow?): {srv.stderr()[-300:]}")
        slow.settimeout(TIMEOUT)
        n = 0
        try:
            while True:
                chunk = slow.recv(1 << 20)
                if not chunk:
                    break
                n += len(chunk)
        except ConnectionResetError:
            pass
        assert n < len(want), "the slow receiver was not dropped"
        assert srv.stop() == 0, srv.stderr()
        assert "1 slow receivers dropped" in srv.stderr(), srv.stderr()
        for s in (a, b, slow):
            s.close()
    finally:
        srv.kill()


def smoke_fifo(exe):
    run_bad([exe], 2, "usage")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "feed")
        srv = Proc(exe, path, "0")
        try:
            clients = [connect(srv.port) for _ in range(2)]
            # Lines written before a client was accepted are not its: write
            # until each has seen one, then the line under test.
            seen = [False, False]
            deadline = time.monotonic() + TIMEOUT
            while not all(seen):
                assert time.monotonic() < deadline, "no FIFO line reached the clients"
                with open(path, "wb") as w:  # the server holds the read end
                    w.write(b"ping\n")
                for i, c in enumerate(clients):
                    c.settimeout(0.1)
                    try:
                        seen[i] = seen[i] or b"ping\n" in c.recv(65536)
                    except socket.timeout:
                        pass
                    c.settimeout(TIMEOUT)
            with open(path, "wb") as w:  # a second writer, after the first left
                w.write(b"hel")
                w.flush()
                w.write(b"lo\n")
            for c in clients:
                assert read_until(c, b"hello\n").endswith(b"hello\n")
            # Every writer has left: the FIFO must not read as EOF forever
            # (level-triggered, that would spin the loop).
            cpu0 = cpu_seconds(srv.p.pid)
            time.sleep(1.0)
            spent = cpu_seconds(srv.p.pid) - cpu0
            assert spent < 0.1, f"{spent:.2f} s of CPU in 1 s idle: the loop spins"
            assert srv.stop() == 0, srv.stderr()
            assert not os.path.exists(path), "the FIFO it created was left behind"
            for c in clients:
                c.close()
        finally:
            srv.kill()


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    bindir, suffix = sys.argv[1], sys.argv[2] if len(sys.argv) == 3 else ""
    for name, fn in (("echo", smoke_echo), ("chat", smoke_chat), ("fifo", smoke_fifo)):
        exe = os.path.join(bindir, name + suffix)
        t0 = time.monotonic()
        fn(exe)
        print(f"smoke: {name}{suffix} ok ({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    main()
