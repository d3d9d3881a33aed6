"""Helpers for driving evl-testsrv from pytest (see conftest.py for fixtures).

Everything here is plain Python (standard library only) so that scenarios can
use it directly:

    Server      one running evl-testsrv: start(), connect(), stats(), stop()
    Client      a blocking socket with a line reader and timeouts
    pattern()   the BLAST byte pattern, to verify every byte of a stream
    cpu_seconds(pid)  user+system CPU time of a process (/proc/<pid>/stat)
    wait_for()  poll a condition with a deadline

Conventions: addresses are 127.0.0.1 or unix sockets only; every process a
test starts is stopped by its PID; timeouts raise AssertionError (a failed
test), never hang.
"""

import json
import os
import select
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SERVER = "build/asan/evl-testsrv"

# What the Makefile exports, for runs of pytest outside make: leaks and
# every sanitizer report make the server fail (exit code != 0).
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1:strict_string_checks=1:"
                    "detect_stack_use_after_return=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}

START_TIMEOUT = 15.0   # seconds to print LISTENING (ASan start is slow)
STOP_TIMEOUT = 15.0    # seconds to exit after SIGTERM
IO_TIMEOUT = 10.0      # default for a client read


def server_path():
    """The server binary: $SERVER, relative paths from the repository root."""
    path = os.environ.get("SERVER") or DEFAULT_SERVER
    return path if os.path.isabs(path) else os.path.join(ROOT, path)


def cpu_seconds(pid):
    """User + system CPU time of pid in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    # The command name (field 2) may contain spaces: count after its ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def wait_for(cond, timeout=5.0, interval=0.02, what="condition"):
    """Calls cond() until it returns a true value (returned) or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ---- the BLAST pattern --------------------------------------------------

_blocks_cache = {}


def _blocks(seed):
    """The 256 possible 256-byte blocks: within block k = i >> 8, byte i is
    ((lo ^ x) * 29 + seed) & 0xff with lo = i & 0xff, x = (k ^ (k >> 8)) & 0xff."""
    seed &= 0xff
    if seed not in _blocks_cache:
        _blocks_cache[seed] = [bytes(((lo ^ x) * 29 + seed) & 0xff for lo in range(256))
                               for x in range(256)]
    return _blocks_cache[seed]


def pattern(n, seed, offset=0):
    """Bytes [offset, offset + n) of BLAST's stream for seed (SPEC §4)."""
    if n <= 0:
        return b""
    blocks = _blocks(seed)
    first, last = offset >> 8, (offset + n - 1) >> 8
    data = b"".join(blocks[(k ^ (k >> 8)) & 0xff] for k in range(first, last + 1))
    start = offset - (first << 8)
    return data[start:start + n]


def pattern_byte(i, seed):
    """Byte i of the stream, straight from the SPEC's formula."""
    return ((i ^ (i >> 8) ^ (i >> 16)) * 29 + seed) & 0xff


def check_pattern(data, seed, offset=0):
    """Asserts data is the pattern at offset; names the first wrong byte."""
    want = pattern(len(data), seed, offset)
    if data != want:
        i = next(k for k in range(len(data)) if data[k] != want[k])
        raise AssertionError(f"BLAST byte {offset + i}: got {data[i]}, want {want[i]} "
                             f"(seed {seed}, {len(data)} bytes checked)")


# ---- clients ------------------------------------------------------------

class Client:
    """A connected socket with a line reader. Reads raise AssertionError on
    timeout or on an unexpected EOF."""

    def __init__(self, sock, timeout=IO_TIMEOUT):
        self.sock = sock
        self.timeout = timeout
        self.buf = b""

    @classmethod
    def tcp(cls, port, host="127.0.0.1", rcvbuf=None, **kw):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:  # before connect: the window is agreed at the handshake
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(IO_TIMEOUT)
        s.connect((host, port))
        return cls(s, **kw)

    @classmethod
    def unix(cls, path, **kw):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(IO_TIMEOUT)
        s.connect(path)
        return cls(s, **kw)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self, timeout):
        """Reads what is there into self.buf; False at EOF."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise AssertionError(f"no data from the server within {timeout} s "
                                 f"(have {len(self.buf)} bytes: {self.buf[:80]!r})") from None
        except ConnectionResetError:
            return False
        if not data:
            return False
        self.buf += data
        return True

    def readline(self, timeout=None):
        """The next line, without its '\\n', as str (bytes kept as latin-1)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self._fill(max(left, 0.001)):
                raise AssertionError(f"no complete line from the server "
                                     f"(have {self.buf[:80]!r})")
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("latin-1")

    def cmd(self, line, timeout=None):
        """Sends one command line, returns the reply line."""
        self.send(line + "\n")
        return self.readline(timeout)

    def read_exact(self, n, timeout=None):
        """Exactly n bytes (raw)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        chunks, have = [], 0
        if self.buf:
            take = self.buf[:n]
            self.buf = self.buf[n:]
            chunks.append(take)
            have = len(take)
        while have < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"got {have} of {n} bytes within the timeout")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(min(n - have, 4 << 20))
            except socket.timeout:
                raise AssertionError(f"got {have} of {n} bytes within the timeout") from None
            if not data:
                raise AssertionError(f"EOF after {have} of {n} bytes")
            chunks.append(data)
            have += len(data)
        return b"".join(chunks)

    def read_eof(self, timeout=None):
        """Everything until the server closes (a reset counts as a close)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the server did not close (have {self.buf[:80]!r})")
            if not self._fill(left):
                data, self.buf = self.buf, b""
                return data

    def closed_by_peer(self, timeout=0.5):
        """True if the server closed within timeout (data before it is kept)."""
        try:
            data = self.read_eof(timeout)
        except AssertionError:
            return False
        self.buf = data
        return True

    def close(self):
        self.sock.close()


# ---- the server ---------------------------------------------------------

class Server:
    """One evl-testsrv process. Iterable as (port, pid, process).

    start() launches it with the given flags plus "--port 0" (unless a
    --port, --listen or --unix flag is given) and waits for its LISTENING
    line. stop() sends SIGTERM to its PID and returns its exit code, killing
    it if it does not exit within STOP_TIMEOUT (the code is then None)."""

    def __init__(self, flags=()):
        self.flags = list(flags)
        self.port = None       # TCP port, or None for --unix
        self.path = None       # unix socket path, or None
        self.proc = None
        self.pid = None
        self.returncode = None
        self.waited = False    # the test stopped or waited for it itself
        self._stderr = tempfile.TemporaryFile()

    def __iter__(self):
        return iter((self.port, self.pid, self.proc))

    def start(self, expect_listen=True):
        args = [server_path()] + self.flags
        if not any(f.split("=")[0] in ("--port", "--listen", "--unix") for f in self.flags):
            args += ["--port", "0"]
        env = dict(os.environ)
        for k, v in SAN_ENV.items():
            env.setdefault(k, v)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=self._stderr, env=env, cwd=ROOT)
        self.pid = self.proc.pid
        if expect_listen:
            self._read_listening()
        return self

    def _read_listening(self):
        deadline = time.monotonic() + START_TIMEOUT
        out = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in out:
            left = deadline - time.monotonic()
            ready = select.select([fd], [], [], max(left, 0))[0] if left > 0 else []
            chunk = os.read(fd, 4096) if ready else b""
            if not chunk:
                self.kill()
                raise AssertionError(f"no LISTENING line from {self.flags} "
                                     f"(stdout {out!r}, stderr: {self.stderr()[-2000:]})")
            out += chunk
        line = out.split(b"\n", 1)[0].decode()
        word, _, where = line.partition(" ")
        assert word == "LISTENING" and where, f"bad first line {line!r}"
        if where.isdigit():
            self.port = int(where)
        else:
            self.path = where

    def stderr(self):
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def connect(self, **kw):
        """A new Client on the server's address."""
        if self.path:
            return Client.unix(self.path, **kw)
        return Client.tcp(self.port, **kw)

    def stats(self):
        """STATS over a fresh connection, as a dict."""
        c = self.connect()
        try:
            return json.loads(c.cmd("STATS"))
        finally:
            c.close()

    def cpu_seconds(self):
        return cpu_seconds(self.pid)

    def alive(self):
        return self.proc.poll() is None

    def send_signal(self, sig):
        os.kill(self.pid, sig)

    def wait(self, timeout=STOP_TIMEOUT):
        """Exit code, or None after killing a process that did not exit."""
        self.waited = True
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.returncode = None
        return self.returncode

    def stop(self, sig=signal.SIGTERM):
        """SIGTERM (or sig) to the PID; the exit code (None: had to kill)."""
        if self.proc.poll() is None:
            os.kill(self.pid, sig)
        return self.wait()

    def kill(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()

    def close(self):
        self.kill()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._stderr.close()
