"""Typed instruction records: arguments, flags, RUN mounts, HEALTHCHECK, and docker's errors."""

from __future__ import annotations

import pytest

from pallet.build import parse_dockerfile
from pallet.build.errors import DockerfileError
from pallet.build.flags import parse_go_duration, parse_ram_bytes
from pallet.build.instructions import (
    Add,
    Arg,
    ArgDefinition,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    Healthcheck,
    Instruction,
    KeyValue,
    Label,
    Onbuild,
    Run,
    Shell,
    SourceContent,
    Stopsignal,
    User,
    Volume,
    Workdir,
)
from pallet.build.mounts import MountError, parse_mount


def one(line: str) -> Instruction:
    df = parse_dockerfile(f"FROM scratch\n{line}\n")
    return df.stages[0].instructions[0]


def fails(line: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(f"FROM scratch\n{line}\n")
    assert str(info.value) == f"Dockerfile:2: {message}"


def test_from_stage_name_and_platform() -> None:
    stage = parse_dockerfile("FROM --platform=$BUILDPLATFORM golang:1.22 AS Build\n").stages[0]
    assert (stage.base, stage.name, stage.line) == ("golang:1.22", "build", 1)
    assert stage.platform == "$BUILDPLATFORM"


@pytest.mark.parametrize(("text", "message"), [
    ("FROM a AS 1x",
     'invalid name for build stage: "1x", name can\'t start with a number or contain symbols'),
    ("FROM a b", "FROM requires either one or three arguments"),
    ("FROM --platfrom=x a", "unknown flag: --platfrom (did you mean platform?)"),
])
def test_from_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        parse_dockerfile(text + "\n")
    assert str(info.value) == f"Dockerfile:1: {message}"


def test_unknown_instruction_names_line_with_suggestion() -> None:
    fails("FROB x", "unknown instruction: FROB (did you mean FROM?)")
    fails("XYZZY x", "unknown instruction: XYZZY")


def test_instruction_before_from() -> None:
    with pytest.raises(DockerfileError, match="^Dockerfile:2: no build stage in current context$"):
        parse_dockerfile("ARG A\nRUN x\nFROM a\n")


def test_run_shell_and_exec_forms() -> None:
    run = one("RUN echo $HOME")
    assert isinstance(run, Run) and run.command == ["echo $HOME"] and run.shell_form
    run = one('RUN ["echo", "$HOME"]')
    assert isinstance(run, Run) and run.command == ["echo", "$HOME"] and not run.shell_form
    assert run.source == 'RUN ["echo", "$HOME"]' and run.line == 2


def test_run_flags_and_mounts() -> None:
    run = one("RUN --mount=type=cache,target=/root/.cache,sharing=locked --network=none "
              "--mount=type=secret,id=tok,required --mount=from=builder,source=/out,target=/in make")
    assert isinstance(run, Run)
    assert run.network == "none" and run.security == "sandbox"
    cache, secret, bind = run.mounts
    assert (cache.type, cache.target, cache.sharing) == ("cache", "/root/.cache", "locked")
    assert not cache.readonly
    assert (secret.type, secret.cache_id, secret.required, secret.readonly) == ("secret", "tok", True, True)
    assert (bind.type, bind.from_, bind.source, bind.readonly) == ("bind", "builder", "/out", True)
    assert sorted(run.flags_used) == ["mount", "network"]


def test_run_mount_with_variables_is_validated_on_expansion() -> None:
    run = one("RUN --mount=type=$T,target=/c,from=stage x")
    assert isinstance(run, Run) and run.mounts[0].from_ == "stage"

    class Ex:
        def word(self, text: str) -> str:
            return text.replace("$T", "cache")

        def words(self, text: str) -> list[str]:
            return [text]

        def raw(self, text: str) -> str:
            return text

    expanded = run.expanded(Ex())
    assert expanded.mounts[0].type == "cache" and expanded.mounts[0].target == "/c"
    assert run.mounts[0].type == "bind"  # the original is untouched


@pytest.mark.parametrize(("line", "message"), [
    ("RUN --network=bridge x", 'invalid network mode "bridge"'),
    ("RUN --security=root x", 'security "root" is not valid'),
    ("RUN --mount=type=foo x", 'unsupported mount type "foo"'),
    ("RUN --mount=type=cahce x", 'unsupported mount type "cahce" (did you mean cache?)'),
    ("RUN --mount=type=bind,mode=0755 x", 'mode not allowed for "bind" type mounts'),
    ("RUN --mount=type=secret x", "invalid secret mount. one of source, target required"),
    ("RUN --mount=type=cache,sharing=nope x", 'unsupported sharing value "nope"'),
    ("RUN --mount=from=$STAGE x", "'from' doesn't support variable expansion, define alias stage instead"),
    ("RUN --mount=type=tmpfs,target=/t,bogus=1 x", "unexpected key 'bogus' in 'bogus=1'"),
    ("RUN --mount x", "missing a value on flag: --mount"),
    ("RUN --network=none --network=host x", "duplicate flag specified: --network"),
])
def test_run_errors(line: str, message: str) -> None:
    fails(line, message)


def test_mount_units_and_modes() -> None:
    m = parse_mount("type=tmpfs,target=/t,size=64m")
    assert m.size_limit == 64 << 20 and not m.readonly
    m = parse_mount("type=cache,target=/c,mode=0700,uid=1000,gid=100,ro")
    assert (m.mode, m.uid, m.gid, m.readonly) == (0o700, 1000, 100, True)
    with pytest.raises(MountError, match="invalid value 0o7 for mode"):
        parse_mount("type=cache,target=/c,mode=0o7")
    m = parse_mount('type=bind,"source=a,b",target=/x')
    assert m.source == "a,b"


def test_copy_and_add_flags() -> None:
    copy = one("COPY --from=build --chown=app:app --chmod=0644 --link --exclude=*.md --exclude=x a b /dst/")
    assert isinstance(copy, Copy)
    assert (copy.from_, copy.chown, copy.chmod, copy.link) == ("build", "app:app", "0644", True)
    assert copy.sources == ["a", "b"] and copy.dest == "/dst/" and copy.excludes == ["*.md", "x"]
    add = one("ADD --checksum=sha256:abc --keep-git-dir=false --unpack https://x/y.tar /y")
    assert isinstance(add, Add)
    assert (add.checksum, add.keep_git_dir, add.unpack) == ("sha256:abc", False, True)
    assert one("ADD a b").keep_git_dir is None  # type: ignore[attr-defined]


def test_copy_heredoc_sources() -> None:
    copy = one("COPY <<one <<-'two' /dst/\nfirst $X\none\n\tsecond $X\n\ttwo")
    assert isinstance(copy, Copy)
    assert copy.sources == [] and copy.dest == "/dst/"
    assert copy.contents == [SourceContent("one", "first $X\n", True),
                             SourceContent("two", "second $X\n", False)]


@pytest.mark.parametrize(("line", "message"), [
    ("COPY a", "COPY requires at least two arguments, but only one was provided. Destination could not be "
               "determined"),
    ("COPY a <<EOF\nx\nEOF", "COPY cannot accept a heredoc as a destination"),
    ("COPY --frm=x a b", "unknown flag: --frm (did you mean from?)"),
    ("COPY --link=maybe a b", "expecting boolean value for flag --link, not: maybe"),
    ("COPY --link= a b", "missing a value on flag: --link"),
    ("ADD --from=x a b", "unknown flag: --from"),
])
def test_copy_errors(line: str, message: str) -> None:
    fails(line, message)


def test_env_and_label_pairs() -> None:
    env = one('ENV A=1 B="two words" C=')
    assert isinstance(env, Env)
    assert env.pairs == [KeyValue("A", "1"), KeyValue("B", '"two words"'), KeyValue("C", "")]
    legacy = one("ENV PATH /usr/bin:$PATH")
    assert isinstance(legacy, Env) and legacy.pairs == [KeyValue("PATH", "/usr/bin:$PATH", no_delim=True)]
    label = one('LABEL "com.example.vendor"="ACME" version=1.0')
    assert isinstance(label, Label) and label.pairs[0] == KeyValue('"com.example.vendor"', '"ACME"')


def test_arg_definitions() -> None:
    arg = one('ARG A B=2 C="x y"')
    assert isinstance(arg, Arg)
    assert arg.args == [ArgDefinition("A"), ArgDefinition("B", "2"), ArgDefinition("C", '"x y"')]
    fails("ARG =x", "ARG names can not be blank")
    fails("ARG", "ARG requires at least one argument")


def test_simple_instructions() -> None:
    assert one("USER app:app") == User(user="app:app", line=2, end_line=2, source="USER app:app")
    assert isinstance(one("WORKDIR /src"), Workdir)
    assert isinstance(one("STOPSIGNAL SIGTERM"), Stopsignal)
    volume = one('VOLUME ["/a", "/b"]')
    assert isinstance(volume, Volume) and volume.paths == ["/a", "/b"]
    expose = one("EXPOSE 9000/udp 80")
    assert isinstance(expose, Expose) and expose.ports == ["80", "9000/udp"]
    shell = one('SHELL ["/bin/bash", "-c"]')
    assert isinstance(shell, Shell) and shell.shell == ["/bin/bash", "-c"]
    cmd = one("CMD []")
    assert isinstance(cmd, Cmd) and cmd.command == [] and not cmd.shell_form
    entry = one("ENTRYPOINT exec app")
    assert isinstance(entry, Entrypoint) and entry.command == ["exec app"] and entry.shell_form


@pytest.mark.parametrize(("line", "message"), [
    ("USER", "USER requires exactly one argument"),
    ("WORKDIR", "WORKDIR requires exactly one argument"),
    ("EXPOSE", "EXPOSE requires at least one argument"),
    ('VOLUME [""]', "VOLUME specified can not be an empty string"),
    ("SHELL bash -c", "SHELL requires the arguments to be in JSON form"),
    ("SHELL []", "SHELL requires at least one argument"),
    ("LABEL", "LABEL requires at least one argument"),
    ("ENV", "ENV requires at least one argument"),
    ("CMD --doit x", "unknown flag: --doit"),
    ("MAINTAINER", "MAINTAINER requires exactly one argument"),
])
def test_argument_count_errors(line: str, message: str) -> None:
    fails(line, message)


def test_healthcheck() -> None:
    hc = one("HEALTHCHECK --interval=30s --timeout=1m30s --start-period=500ms --retries=3 "
             "CMD curl -f x || exit 1")
    assert isinstance(hc, Healthcheck)
    assert hc.test == ["CMD-SHELL", "curl -f x || exit 1"]
    assert (hc.interval, hc.timeout, hc.start_period, hc.retries) == (30 * 10**9, 90 * 10**9, 5 * 10**8, 3)
    hc = one('HEALTHCHECK CMD ["/bin/check", "-q"]')
    assert isinstance(hc, Healthcheck) and hc.test == ["CMD", "/bin/check", "-q"]
    hc = one("HEALTHCHECK none")
    assert isinstance(hc, Healthcheck) and hc.test == ["NONE"]


@pytest.mark.parametrize(("line", "message"), [
    ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
    ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
    ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
    ("HEALTHCHECK CONNECT TCP 7000", 'Unknown type "CONNECT" in HEALTHCHECK (try CMD)'),
    ("HEALTHCHECK --interval=1us CMD x", 'Interval "interval" cannot be less than 1ms'),
    ("HEALTHCHECK --timeout=5 CMD x", 'time: missing unit in duration "5"'),
    ("HEALTHCHECK --retries=-1 CMD x", "--retries cannot be negative (-1)"),
])
def test_healthcheck_errors(line: str, message: str) -> None:
    fails(line, message)


def test_onbuild() -> None:
    ob = one("ONBUILD COPY --from=x a /b")
    assert isinstance(ob, Onbuild) and ob.expression == "COPY --from=x a /b"
    assert ob.trigger is not None and ob.trigger.flags == ["--from=x"]
    ob = one("onbuild RUN <<EOF\necho hi\nEOF")
    assert isinstance(ob, Onbuild) and ob.expression == "RUN <<EOF\necho hi\nEOF"
    fails("ONBUILD ONBUILD RUN x", "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    fails("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger")


def test_flag_value_formats() -> None:
    assert parse_go_duration("1h2m3.5s") == 3723 * 10**9 + 5 * 10**8
    assert parse_go_duration("-1.5m") == -90 * 10**9
    assert parse_go_duration("0") == 0
    for bad in ("", "5", "1x", ".s", "s"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)
    assert parse_ram_bytes("1g") == 1 << 30 and parse_ram_bytes("512KiB") == 512 << 10
    assert parse_ram_bytes("10") == 10
