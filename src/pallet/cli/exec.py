"""`exec`: run a command in a running container. The process is started straight from this CLI
process (no monitor, no new interpreter) and is our child: its exit code is ours.

Without -t it inherits our stdin (with -i; else /dev/null), stdout and stderr directly. With -t it gets a
pty of the container's, which we pump to and from our own terminal (cli/pty_session.py)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

from pallet.cli.args import REMAINDER, SUPPRESS, Namespace, Parser, requires
from pallet.engine.core import Engine
from pallet.errors import PalletError

_USAGE = "[OPTIONS] CONTAINER COMMAND [ARG...]"
# Forwarded to the process when it has no terminal of ours: docker's client would die and leave it
# running; here Ctrl-C or a kill of the client reaches the command, as with a local one.
_PROXIED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _parser(prog: str) -> Parser:
    p = Parser(prog, _USAGE, "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true", help="Detached mode: run command in the background")
    p.add_argument("--detach-keys", help="Override the key sequence for detaching a container")
    p.add_argument("-e", "--env", action="append", default=[], help="Set environment variables")
    p.add_argument("--env-file", action="append", default=[], help="Read in a file of environment variables")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open even if not attached")
    p.add_argument("--privileged", action="store_true", help="Give extended privileges to the command")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a pseudo-TTY")
    p.add_argument("-u", "--user", help='Username or UID (format: "<name|uid>[:<group|gid>]")')
    p.add_argument("-w", "--workdir", help="Working directory inside the container")
    p.add_argument("container", nargs="?", help=SUPPRESS)
    p.add_argument("command", nargs=REMAINDER, help=SUPPRESS)
    return p


def exec_(prog: str, args: list[str]) -> int:
    code = _exec(prog, args)
    # Interpreter teardown costs ~12 ms of exec's ~60 and nothing is left to tear down: leave now.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    os._exit(code)


def _exec(prog: str, args: list[str]) -> int:
    ns = _parser(prog).parse(args)
    requires([a for a in (ns.container, *ns.command[:1]) if a], prog, _USAGE, at_least=2)
    from pallet.cli import detach_keys, terminal
    from pallet.engine import exec as engine_exec

    keys = detach_keys.parse(ns.detach_keys)
    if ns.tty and ns.interactive and not ns.detach and not terminal.is_tty(0):
        raise PalletError("the input device is not a TTY")
    env = _env(ns) if ns.env or ns.env_file else []
    engine = Engine()
    target = engine_exec.target(engine, ns.container)
    engine.close()

    def spawn(stdin: int | None, stdout: int, stderr: int, console: int | None = None) -> int:
        return engine_exec.spawn(
            target, ns.command, env=env, user=ns.user, workdir=ns.workdir, tty=ns.tty,
            privileged=ns.privileged, stdin=stdin, stdout=stdout, stderr=stderr, console_fd=console,
        )

    if ns.tty:
        from pallet.cli import pty_session

        master, slave = engine_exec.open_console(target)
        try:
            size = terminal.our_size()
            if size:
                terminal.set_size(master, *size)
            # The session catches SIGCHLD from before the process exists.
            session = None if ns.detach else pty_session.PtySession(master, stdin=ns.interactive, keys=keys)
            pid = spawn(None, 1, 2, console=slave)
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        if session is None:
            pty_session.keep_open_detached(master)
            return 0
        return session.run(pid, raw=ns.interactive and terminal.is_tty(0))
    if ns.detach:
        null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        try:
            spawn(None, null, null)  # not waited for: when we exit, init adopts it
        finally:
            os.close(null)
        return 0
    return _run_plain(lambda: spawn(0 if ns.interactive else None, 1, 2))


def _env(ns: Namespace) -> list[str]:
    """-e and --env-file as `run` reads them (run_opts costs ~10 ms to import: only when asked)."""
    from pallet.cli import run_opts

    return [e for f in ns.env_file for e in run_opts.kv_file(f, lookup_env=True)] + [
        run_opts.env_flag(e) for e in ns.env
    ]


def _run_plain(start: Callable[[], int]) -> int:
    """Start with our own stdio, forward signals, and wait for the exit code (128+N for signal N)."""
    pid = 0
    pending: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        if pid:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        else:
            pending.append(signum)

    for sig in _PROXIED:
        signal.signal(sig, forward)
    pid = start()
    for early in pending:
        forward(early, None)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code
