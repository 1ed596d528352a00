"""`exec -t`: pump between our terminal and the master of the pty the exec'd process has as its
terminal, forward window resizes, spot the detach keys, and end with the process's exit code."""

from __future__ import annotations

import errno
import os
import selectors
import signal
from contextlib import nullcontext

from pallet.cli import terminal
from pallet.cli.detach_keys import DetachKeyFilter


class PtySession:
    """Create it before starting the process (it catches SIGCHLD from then on), run() it after."""

    def __init__(self, master: int, *, stdin: bool, keys: bytes) -> None:
        self.master = master
        self.stdin = stdin
        self.keys = DetachKeyFilter(keys)
        self.signals = terminal.SignalPipe((signal.SIGWINCH, signal.SIGCHLD))
        self.to_master = b""
        self.stdout_ok = True

    def run(self, pid: int, *, raw: bool) -> int:
        """The process's exit code, or 0 after a detach (the process goes on; its terminal is kept
        open by a detached helper)."""
        os.set_blocking(self.master, False)
        try:
            with terminal.raw_mode(0) if raw else nullcontext():
                detached = self._pump(pid)
        finally:
            self.signals.close()
        if detached:
            keep_open_detached(self.master)
            return 0
        os.close(self.master)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    def _pump(self, pid: int) -> bool:
        sel = selectors.DefaultSelector()
        sel.register(self.master, selectors.EVENT_READ, "master")
        sel.register(self.signals.fd, selectors.EVENT_READ, "signals")
        if self.stdin:
            sel.register(0, selectors.EVENT_READ, "stdin")
        try:
            while True:
                for key, mask in sel.select():
                    if key.data == "master":
                        if mask & selectors.EVENT_READ and self._from_master() is False:
                            return False  # every holder of the slave is gone
                        if mask & selectors.EVENT_WRITE:
                            self._flush_to_master(sel)
                    elif key.data == "stdin":
                        data = _read(0)
                        if not data:
                            sel.unregister(0)  # our input ended; the process keeps its terminal
                            continue
                        data, detach = self.keys.feed(data)
                        self.to_master += data
                        self._flush_to_master(sel)
                        if detach:
                            return True
                    elif key.data == "signals":
                        for sig in self.signals.take():
                            if sig == signal.SIGWINCH:
                                size = terminal.our_size()
                                if size:
                                    terminal.set_size(self.master, *size)
                            elif _exited(pid):
                                # Background processes may still hold the slave: take what was
                                # written so far and stop.
                                while self._from_master():
                                    pass
                                return False
        finally:
            sel.close()

    def _from_master(self) -> bool | None:
        """Copy what the master has to our stdout: True if there was some, None if nothing is pending,
        False at the end (EIO: every holder of the slave is gone)."""
        try:
            data = os.read(self.master, 65536)
        except BlockingIOError:
            return None
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        if self.stdout_ok:
            try:
                terminal.write_all(1, data)
            except OSError:  # our reader went away: keep draining, stop writing
                self.stdout_ok = False
        return True

    def _flush_to_master(self, sel: selectors.BaseSelector) -> None:
        try:
            n = os.write(self.master, self.to_master) if self.to_master else 0
            self.to_master = self.to_master[n:]
        except BlockingIOError:
            pass
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if self.to_master else 0)
        if sel.get_key(self.master).events != events:
            sel.modify(self.master, events, "master")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:
        return b""


def _exited(pid: int) -> bool:
    """Whether our child has exited, leaving it to be reaped (WNOWAIT) for its status."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def keep_open_detached(master: int) -> None:
    """Hand the master to a detached helper (new session, no terminal) that keeps it open and drains
    it, so the process neither gets a hangup nor blocks on a full terminal once we are gone."""
    child = os.fork()
    if child == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                _drain_forever(master)
        finally:
            os._exit(0)
    os.close(master)
    os.waitpid(child, 0)


def _drain_forever(master: int) -> None:
    if master < 3:
        import fcntl

        master = fcntl.fcntl(master, fcntl.F_DUPFD, 3)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    if master > 3:
        os.closerange(3, master)
    os.closerange(master + 1, 1 << 20)
    os.set_blocking(master, True)
    try:
        while os.read(master, 65536):
            pass
    except OSError:
        pass  # EIO: the last holder of the slave is gone
    os._exit(0)
