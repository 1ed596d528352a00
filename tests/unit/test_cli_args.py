"""The CLI's flag parser: docker's (pflag) rules behind argparse's add_argument API."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pallet.cli.args import REMAINDER, SUPPRESS, Parser
from pallet.cli.run_flags import create_parser
from pallet.errors import InvalidArgument


def run_parser() -> Parser:
    """`run`'s parser, as cli/run.py builds it."""
    p = create_parser("pallet run", "[OPTIONS] IMAGE [COMMAND] [ARG...]")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--sig-proxy", nargs="?", const="true", default="true")
    return p


def list_parser() -> Parser:
    """A command whose flags may follow its positionals (docker's default: interspersed)."""
    p = Parser("pallet rm", "[OPTIONS] CONTAINER [CONTAINER...]")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("--filter", action="append", default=[])
    p.add_argument("-t", "--time", "--timeout", dest="time")
    p.add_argument("-n", "--last", type=int, default=-1)
    p.add_argument("--pull", choices=("always", "missing", "never"), default="missing")
    p.add_argument("containers", nargs="*")
    return p


def error(p: Parser, *args: str) -> str:
    with pytest.raises(InvalidArgument) as e:
        p.parse(list(args))
    assert e.value.exit_code == 125
    return str(e.value)


def test_defaults_are_argparse_s() -> None:
    ns = run_parser().parse(["busybox"])
    assert ns.env == [] and ns.name is None and ns.rm is False and ns.pull == "missing"
    assert ns.sig_proxy == "true" and ns.image == "busybox" and ns.command == []
    assert vars(list_parser().parse([])) == {
        "force": False, "volumes": False, "filter": [], "time": None, "last": -1, "pull": "missing",
        "containers": [],
    }  # fmt: skip
    assert run_parser().parse([]).image is None


def test_append_defaults_are_not_shared() -> None:
    p = run_parser()
    assert p.parse(["-e", "A=1", "busybox"]).env == ["A=1"]
    assert p.parse(["busybox"]).env == []


def test_value_forms() -> None:
    p = run_parser()
    for args in (["-e", "A=1"], ["-eA=1"], ["-e=A=1"], ["--env", "A=1"], ["--env=A=1"]):
        assert p.parse([*args, "busybox"]).env == ["A=1"], args
    ns = p.parse(["-p8080:80", "--publish", "1:2", "-e", "-x", "--name=", "busybox"])
    assert ns.publish == ["8080:80", "1:2"] and ns.env == ["-x"] and ns.name == ""
    assert p.parse(["--name", "a", "--name", "b", "busybox"]).name == "b"  # the last one wins
    assert p.parse(["-h", "box", "busybox"]).hostname == "box"  # -h is run's hostname, not help


def test_short_clusters() -> None:
    p = run_parser()
    for cluster in ("-dit", "-itd", "-tid"):
        ns = p.parse([cluster, "busybox"])
        assert ns.detach and ns.interactive and ns.tty, cluster
    ns = p.parse(["-itePATH=/x", "busybox"])  # a flag that takes a value ends the cluster
    assert ns.interactive and ns.tty and ns.env == ["PATH=/x"]
    ns = p.parse(["-ite", "A=1", "busybox"])
    assert ns.env == ["A=1"] and ns.image == "busybox"
    assert error(p, "-itx", "busybox").startswith("unknown shorthand flag: 'x' in -x\n")


def test_booleans_take_a_value_after_equals_only() -> None:
    p = run_parser()
    assert p.parse(["--rm=false", "busybox"]).rm is False
    assert p.parse(["--rm=1", "-t=true", "-i=0", "busybox"]).rm is True
    ns = p.parse(["-it=false", "busybox"])
    assert ns.interactive and not ns.tty
    ns = p.parse(["--rm", "false"])  # `false` is the image, as with docker
    assert ns.rm and ns.image == "false"
    assert error(p, "--rm=yes", "busybox") == (
        'invalid argument "yes" for "--rm" flag: strconv.ParseBool: parsing "yes": invalid syntax\n'
        "See 'pallet run --help'."
    )
    assert 'for "-t, --tty" flag' in error(p, "-t=maybe", "busybox")


def test_optional_value() -> None:
    p = run_parser()
    assert p.parse(["--sig-proxy", "busybox"]).sig_proxy == "true"
    assert p.parse(["--sig-proxy=false", "busybox"]).sig_proxy == "false"
    ns = p.parse(["--sig-proxy", "false", "busybox"])
    assert ns.sig_proxy == "true" and ns.image == "false" and ns.command == ["busybox"]


def test_flags_stop_at_the_image() -> None:
    p = run_parser()
    ns = p.parse(["--rm", "busybox", "ls", "-l", "--rm", "-it"])
    assert ns.image == "busybox" and ns.command == ["ls", "-l", "--rm", "-it"] and not ns.tty
    ns = p.parse(["--", "busybox", "true"])
    assert ns.image == "busybox" and ns.command == ["true"]
    assert p.parse(["busybox", "--", "true"]).command == ["--", "true"]  # as docker: `--` is the command
    assert p.parse(["-", "x"]).image == "-"


def test_interspersed_flags() -> None:
    p = list_parser()
    ns = p.parse(["a", "-f", "b", "--filter", "x=1", "c", "--filter=y"])
    assert ns.containers == ["a", "b", "c"] and ns.force and ns.filter == ["x=1", "y"]
    assert p.parse(["a", "--", "-f", "--x"]).containers == ["a", "-f", "--x"]
    assert p.parse(["-fv", "-", ""]).containers == ["-", ""]


def test_aliases_dest_type_and_choices() -> None:
    p = list_parser()
    assert p.parse(["--timeout", "3"]).time == "3" and p.parse(["-t3"]).time == "3"
    assert p.parse(["-n", "-1"]).last == -1 and p.parse(["--last=5"]).last == 5
    assert error(p, "-n", "x").startswith(
        'invalid argument "x" for "-n, --last" flag: strconv.ParseInt: parsing "x": invalid syntax\n'
    )
    assert p.parse(["--pull", "never"]).pull == "never"
    assert error(p, "--pull", "x").startswith(
        "argument --pull: invalid choice: 'x' (choose from 'always', 'missing', 'never')\n"
    )


def test_errors() -> None:
    p = run_parser()
    assert error(p, "--bogus", "busybox") == "unknown flag: --bogus\nSee 'pallet run --help'."
    assert error(p, "--bogus=1").startswith("unknown flag: --bogus\n")
    assert error(p, "--env").startswith("flag needs an argument: --env\n")
    assert error(p, "-e").startswith("flag needs an argument: 'e' in -e\n")
    assert error(p, "-ie").startswith("flag needs an argument: 'e' in -e\n")
    assert error(p, "---x").startswith("bad flag syntax: ---x\n")
    assert error(p, "--env-fil", "x").startswith("unknown flag: --env-fil\n")  # no abbreviations


def test_too_many_positionals() -> None:
    p = Parser("pallet port", "CONTAINER [PRIVATE_PORT[/PROTO]]")
    p.add_argument("container", nargs="?")
    p.add_argument("port", nargs="?")
    assert vars(p.parse(["c"])) == {"container": "c", "port": None}
    assert error(p, "a", "b", "c") == (
        "\"pallet port\" requires at most 2 arguments.\nSee 'pallet port --help'.\n\n"
        "Usage:  pallet port CONTAINER [PRIVATE_PORT[/PROTO]]"
    )
    assert error(Parser("pallet ps", "[OPTIONS]"), "x").startswith('"pallet ps" accepts no arguments.\n')


def test_remainder_and_suppress_positionals() -> None:
    p = Parser("pallet exec", "[OPTIONS] CONTAINER COMMAND [ARG...]", "Execute a command")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep STDIN open")
    p.add_argument("container", nargs="?", help=SUPPRESS)
    p.add_argument("command", nargs=REMAINDER, help=SUPPRESS)
    ns = p.parse(["-i", "c", "sh", "-c", "echo -i"])
    assert ns.interactive and ns.container == "c" and ns.command == ["sh", "-c", "echo -i"]


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    p = list_parser()
    p.add_argument("--format", help="Format output")
    for flag in ("--help", "-h", "-fh"):  # -h is help where no flag has it, as pflag's
        with pytest.raises(SystemExit) as e:
            p.parse(["a", flag])
        assert e.value.code == 0
    assert capsys.readouterr().out.split("\n\n")[0] == "Usage:  pallet rm [OPTIONS] CONTAINER [CONTAINER...]"
    assert p.format_help().splitlines()[2:] == [
        "Options:",
        "      --filter list",
        "  -f, --force",
        "      --format string   Format output",
        "  -n, --last int        (default -1)",
        '      --pull string     (default "missing")',
        "  -t, --time string",
        "  -v, --volumes",
    ]


def test_misuse_is_refused() -> None:
    p = Parser("pallet x", "")
    p.add_argument("-a", "--all", action="store_true")
    for names, kw in (
        (("--all",), {}),
        (("--help",), {}),
        (("--x",), {"action": "count"}),
        (("x",), {"nargs": 2}),
    ):
        with pytest.raises(ValueError):
            p.add_argument(*names, **kw)  # type: ignore[arg-type]


def test_import_is_light() -> None:
    """The point of this module: no argparse (nor re, typing, dataclasses) on `pallet run`'s path."""
    heavy = "{'argparse', 're', 'typing', 'dataclasses'}"
    code = f"import sys, pallet.cli.args; print(sorted({heavy} & set(sys.modules)))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        == "[]\n"
    )
