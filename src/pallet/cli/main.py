"""`pallet`: docker-compatible commands. Dispatches on the command name first and imports only
that command's module, so `pallet run` pays for nothing else."""

from __future__ import annotations

import os
import sys
from importlib import import_module

# command words -> (module under pallet.cli, function, one-line summary)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "run": ("run", "run", "Create and run a new container from an image"),
    "create": ("run", "create", "Create a new container"),
    "start": ("lifecycle", "start", "Start one or more stopped containers"),
    "stop": ("lifecycle", "stop", "Stop one or more running containers"),
    "kill": ("lifecycle", "kill", "Kill one or more running containers"),
    "restart": ("lifecycle", "restart", "Restart one or more containers"),
    "wait": ("lifecycle", "wait", "Block until one or more containers stop, then print their exit codes"),
    "pause": ("lifecycle", "pause", "Pause all processes within one or more containers"),
    "unpause": ("lifecycle", "unpause", "Unpause all processes within one or more containers"),
    "rename": ("lifecycle", "rename", "Rename a container"),
    "update": ("lifecycle", "update", "Update configuration of one or more containers"),
    "rm": ("lifecycle", "rm", "Remove one or more containers"),
    "logs": ("logs", "logs", "Fetch the logs of a container"),
    "attach": ("attach", "attach", "Attach local standard input, output, and error streams to a container"),
    "exec": ("exec", "exec_", "Execute a command in a running container"),
    "ps": ("ps", "ps", "List containers"),
    "top": ("stats", "top", "Display the running processes of a container"),
    "stats": ("stats", "stats", "Display a live stream of container(s) resource usage statistics"),
    "cp": ("files", "cp", "Copy files/folders between a container and the local filesystem"),
    "diff": ("files", "diff", "Inspect changes to files or directories on a container's filesystem"),
    "commit": ("files", "commit", "Create a new image from a container's changes"),
    "export": ("files", "export", "Export a container's filesystem as a tar archive"),
    "port": ("port", "port", "List port mappings or a specific mapping for the container"),
    "build": ("build", "build", "Build an image from a Dockerfile"),
    "images": ("images", "images", "List images"),
    "tag": ("images", "tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "rmi": ("images", "rmi", "Remove one or more images"),
    "history": ("images", "history", "Show the history of an image"),
    "load": ("images", "load", "Load an image from a tar archive or STDIN"),
    "save": ("images", "save", "Save one or more images to a tar archive"),
    "import": ("images", "import_", "Import the contents from a tarball to create a filesystem image"),
    "inspect": ("inspect", "inspect", "Return low-level information on pallet objects"),
    "version": ("system", "version", "Show the pallet version information"),
    "info": ("system", "info", "Display system-wide information"),
}

# `pallet image ls` and friends: group word -> {subcommand -> (module, function)}. A top-level
# command of the same name is the default target.
GROUPS: dict[str, dict[str, tuple[str, str]]] = {
    "image": {
        "ls": ("images", "images"), "list": ("images", "images"), "tag": ("images", "tag"),
        "rm": ("images", "rmi"), "remove": ("images", "rmi"), "history": ("images", "history"),
        "inspect": ("images", "image_inspect"), "load": ("images", "load"), "save": ("images", "save"),
        "import": ("images", "import_"), "prune": ("images", "image_prune"),
        "bootstrap": ("images", "bootstrap"),
    },
    "container": {
        **{name: COMMANDS[name][:2] for name in (
            "run", "create", "start", "stop", "kill", "restart", "wait", "pause", "unpause", "rename",
            "update", "rm", "logs", "attach", "exec", "top", "stats", "cp", "diff", "commit", "export",
            "port")},
        "ls": ("ps", "ps"), "list": ("ps", "ps"), "ps": ("ps", "ps"), "remove": ("lifecycle", "rm"),
        "inspect": ("inspect", "container_inspect"), "prune": ("lifecycle", "container_prune"),
    },
    "system": {"info": ("system", "info"), "df": ("system", "df"), "prune": ("system", "prune")},
    "builder": {"prune": ("build", "builder_prune"), "build": ("build", "build")},
    "network": {
        "create": ("networks", "create"), "ls": ("networks", "ls"), "list": ("networks", "ls"),
        "inspect": ("networks", "inspect"), "rm": ("networks", "rm"), "remove": ("networks", "rm"),
        "prune": ("networks", "prune"), "connect": ("networks", "connect"),
        "disconnect": ("networks", "disconnect"),
    },
    "volume": {
        "create": ("volumes", "create"), "ls": ("volumes", "ls"), "list": ("volumes", "ls"),
        "inspect": ("volumes", "inspect"), "rm": ("volumes", "rm"), "remove": ("volumes", "rm"),
        "prune": ("volumes", "prune"),
    },
}

USAGE = """Usage:  pallet [OPTIONS] COMMAND

A Docker-compatible container engine

Options:
      --root string      Root of pallet's persistent state (default /var/lib/pallet, env PALLET_ROOT)
      --runroot string   Root of volatile state (default /run/pallet, env PALLET_RUNROOT)
  -D, --debug            Print tracebacks of errors
  -v, --version          Print version information and quit

Management Commands:
  builder     Manage builds
  container   Manage containers
  image       Manage images
  network     Manage networks
  system      Manage pallet
  volume      Manage volumes

Commands:
"""


def _usage() -> str:
    lines = [f"  {name:<10}  {summary}" for name, (_, _, summary) in sorted(COMMANDS.items())]
    return USAGE + "\n".join(lines) + "\n\nRun 'pallet COMMAND --help' for more information on a command.\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    debug = False
    while args and args[0].startswith("-"):
        opt = args.pop(0)
        name, eq, value = opt.partition("=")
        if name in ("--root", "--runroot"):
            if not eq:
                if not args:
                    return _fail(f"flag needs an argument: {name}", 125)
                value = args.pop(0)
            os.environ["PALLET_ROOT" if name == "--root" else "PALLET_RUNROOT"] = value
        elif name in ("-D", "--debug"):
            debug = True
        elif name in ("-v", "--version"):
            args = ["version", "--short"]
            break
        elif name in ("-h", "--help"):
            sys.stdout.write(_usage())
            return 0
        else:
            return _fail(f"unknown flag: {name}\nSee 'pallet --help'.", 125)
    if not args:
        sys.stdout.write(_usage())
        return 0
    word = args.pop(0)
    target: tuple[str, str] | None = None
    prog = f"pallet {word}"
    if word in GROUPS:
        group = GROUPS[word]
        if not args or args[0] in ("-h", "--help"):
            sys.stdout.write(f"Usage:  pallet {word} COMMAND\n\nCommands:\n"
                             + "".join(f"  {k}\n" for k in sorted(group)))
            return 0
        sub = args.pop(0)
        target = group.get(sub)
        prog = f"pallet {word} {sub}"
        if target is None:
            return _fail(f"unknown command: {prog}\nSee 'pallet {word} --help'.", 125)
    elif word in COMMANDS:
        target = COMMANDS[word][:2]
    else:
        return _fail(f"unknown command: pallet {word}\nSee 'pallet --help'.", 125)
    module, func = target
    handler = getattr(import_module(f"pallet.cli.{module}"), func)
    return run_handler(handler, prog, args, debug)


def run_handler(handler: object, prog: str, args: list[str], debug: bool) -> int:
    from pallet.errors import PalletError

    try:
        code: int = handler(prog, args)  # type: ignore[operator]
        return code
    except PalletError as e:
        if debug:
            raise
        return _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if debug:
            raise
        return _fail(_os_error_line(e), 1)


def _os_error_line(e: OSError) -> str:
    import errno

    if e.errno == errno.ENOSPC:
        return "no space left on device" + (f": {e.filename}" if e.filename else "")
    return str(e)


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"Error: {message}\n" if not message.startswith("Error") else message + "\n")
    return code


def entry() -> None:
    """The `pallet` command. It ends with os._exit once our output is flushed: the interpreter's
    own shutdown (module teardown, closing SQLite, which checkpoints its WAL) would add ~10 ms to
    every command, and nothing of ours waits for it. Anything that must happen before exit is
    done by the command itself (context managers, explicit joins)."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        code = 141
    except OSError:
        pass
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(code & 0xFF if code >= 0 else 1)


if __name__ == "__main__":
    entry()
