"""Stage graph and ARG/ENV scoping: global ARGs, build args, platform ARGs, dependencies, targets."""

from __future__ import annotations

import pytest

from pallet.build import (
    BuildPlan,
    BuildPlanError,
    DockerfileError,
    Platform,
    StageScope,
    parse_dockerfile,
    resolve_stages,
)
from pallet.build.instructions import Arg, Copy, Env, Expose, Label, Run, Workdir

AMD64 = Platform("linux", "amd64")
ARM64 = Platform("linux", "arm64")

MULTI = """\
ARG VERSION=3.19
ARG BASE=alpine:${VERSION}
FROM $BASE AS deps
RUN echo deps

FROM golang:1.22 AS build
COPY --from=deps /etc/os-release /x
RUN --mount=type=cache,target=/root/.cache --mount=from=tools,source=/bin/t,target=/t make

FROM scratch AS unused
COPY --from=nope /a /b

FROM build AS test
RUN go test

FROM alpine AS final
COPY --from=1 /out /out
COPY --from=ghcr.io/acme/tool:1 /tool /tool
"""


def plan(text: str, build_args: dict[str, str] | None = None, target: str | None = None) -> BuildPlan:
    df = parse_dockerfile(text)
    return resolve_stages(df, build_args or {}, target, platform=AMD64, build_platform=AMD64)


def test_meta_args_expand_in_from() -> None:
    p = plan(MULTI)
    assert [s.name for s in p.stages] == ["deps", "build", "final"]
    assert p.stages[0].base == "alpine:3.19"
    assert p.global_args["BASE"] == "alpine:3.19"


def test_build_arg_overrides_meta_default_and_feeds_later_defaults() -> None:
    p = plan(MULTI, {"VERSION": "3.20"})
    assert p.stages[0].base == "alpine:3.20"
    p = plan(MULTI, {"BASE": "debian"})
    assert p.stages[0].base == "debian"


def test_dependencies_and_image_sources() -> None:
    p = plan(MULTI)
    by_name = {s.name: s for s in p.stages}
    assert by_name["build"].deps == {0}
    assert by_name["build"].image_sources == ["tools"]
    assert by_name["final"].deps == {1}
    assert by_name["final"].image_sources == ["ghcr.io/acme/tool:1"]
    assert p.target.name == "final"
    assert [[s.name for s in wave] for wave in p.levels()] == [["deps"], ["build"], ["final"]]


def test_target_selects_needed_stages_only() -> None:
    p = plan(MULTI, target="TEST")
    assert [s.name for s in p.stages] == ["deps", "build", "test"]
    assert p.stages[-1].base_stage == 1 and p.stages[-1].deps == {1}


def test_independent_stages_share_a_wave() -> None:
    p = plan("FROM a AS x\nFROM b AS y\nFROM c\nCOPY --from=x / /\nCOPY --from=y / /\n")
    assert [[s.name for s in wave] for wave in p.levels()] == [["x", "y"], ["stage-2"]]


def test_unknown_target() -> None:
    with pytest.raises(BuildPlanError) as info:
        plan(MULTI, target="tset")
    assert str(info.value) == 'Dockerfile: target stage "tset" could not be found (did you mean test?)'


def test_copy_from_misspelt_stage_is_an_image_with_a_warning() -> None:
    p = plan("FROM a AS builder\nFROM b\nCOPY --from=buidler /x /y\n")
    assert p.target.image_sources == ["buidler"] and p.target.deps == set()
    assert any("did you mean builder?" in w for w in p.warnings)


def test_stage_names_are_case_insensitive_for_copy_but_exact_for_from() -> None:
    p = plan("FROM a AS Builder\nFROM builder AS x\nFROM c\nCOPY --from=BUILDER / /\nCOPY --from=x / /\n")
    assert p.stages[1].base_stage == 0
    assert p.target.deps == {0, 1}
    with pytest.raises(BuildPlanError, match="failed to parse stage name"):
        plan("FROM a AS builder\nFROM Builder\n")  # not the stage: an (invalid) image name, as in BuildKit


@pytest.mark.parametrize(("text", "message"), [
    ("FROM a\nCOPY --from=$X / /\n", "Dockerfile:2: variable expansion is not supported for --from"),
    ("FROM a\nCOPY --from=5 / /\n", "Dockerfile:2: invalid stage index 5"),
    ("FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nCOPY --from=one / /\n",
     "Dockerfile:1: circular dependency detected on stage: one"),
    ("FROM a AS one\nCOPY --from=one / /\n", "Dockerfile:1: circular dependency detected on stage: one"),
    ("FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nFROM c\nCOPY --from=one / /\n",
     'Dockerfile:2: cannot copy from stage "two", it needs to be defined before current stage "one"'),
    ("FROM a AS one\nRUN --mount=from=two,target=/t x\nFROM b AS two\nFROM c\nCOPY --from=one / /\n",
     'Dockerfile:2: cannot mount from stage "two" to "/t"'),
    ("ARG B\nFROM $B\n", "Dockerfile:2: base name ($B) should not be blank"),
    ("FROM ${X:?needed}\n", 'Dockerfile:1: failed to process "${X:?needed}": X: needed'),
    ("FROM --platform=$NOPE a\n", "Dockerfile:1: empty platform value from expression $NOPE"),
    ("FROM a AS b\nFROM c\nCOPY --from=B_uild / /\n",
     'Dockerfile:3: failed to parse stage name "B_uild": invalid reference format: repository name '
     "(library/B_uild) must be lowercase"),
    ("FROM Alpine\n", 'Dockerfile:1: failed to parse stage name "Alpine": invalid reference format'),
])
def test_plan_errors(text: str, message: str) -> None:
    with pytest.raises(DockerfileError) as info:
        resolve_stages(parse_dockerfile(text), {}, None, platform=AMD64, build_platform=AMD64)
    assert str(info.value).startswith(message)


def test_forward_reference_in_unneeded_stage_is_fine() -> None:
    p = plan("FROM a AS one\nCOPY --from=two / /\nFROM b AS two\nFROM c AS final\n")
    assert [s.name for s in p.stages] == ["final"]


def test_automatic_platform_args() -> None:
    df = parse_dockerfile("FROM --platform=$BUILDPLATFORM golang AS b\nARG TARGETARCH TARGETPLATFORM\n"
                          "FROM alpine:$TARGETARCH\nCOPY --from=b / /\n")
    p = resolve_stages(df, {}, None, platform="linux/arm64", build_platform=AMD64)
    assert p.stages[0].platform == AMD64 and p.stages[1].base == "alpine:arm64"
    assert p.global_args["TARGETSTAGE"] == "default"
    assert p.global_args["BUILDARCH"] == "amd64" and p.global_args["TARGETVARIANT"] == ""
    scope = StageScope(global_args=p.global_args, build_args={})
    for instruction in df.stages[0].instructions:
        scope.apply(instruction)
    assert scope.variables() == {"TARGETARCH": "arm64", "TARGETPLATFORM": "linux/arm64"}


def test_platform_parsing() -> None:
    assert str(Platform.parse("linux/arm/v7")) == "linux/arm/v7"
    assert Platform.parse("linux/aarch64") == ARM64
    assert Platform.parse("linux/arm64/v8") == ARM64
    assert Platform.parse("linux/armhf") == Platform("linux", "arm", "v7")
    with pytest.raises(ValueError):
        Platform.parse("linux//x")


def test_unused_build_args_are_reported() -> None:
    p = plan("ARG USED\nFROM a\nARG ALSO\nFROM b AS other\nARG ONLY_OTHER\nFROM c\n",
             {"USED": "1", "ALSO": "2", "ONLY_OTHER": "3", "TYPO": "4", "HTTP_PROXY": "p", "BUILDKIT_X": "1"})
    assert p.unused_build_args == ["ALSO", "ONLY_OTHER", "TYPO"]
    assert p.warnings[-1] == "[Warning] One or more build-args [ALSO ONLY_OTHER TYPO] were not consumed"


# --- StageScope ------------------------------------------------------------------------------

def run_stage(text: str, build_args: dict[str, str] | None = None,
              base_env: dict[str, str] | None = None) -> tuple[StageScope, list[object]]:
    df = parse_dockerfile(text)
    p = resolve_stages(df, build_args or {}, None, platform=AMD64, build_platform=AMD64)
    scope = p.scope(base_env)
    return scope, [scope.apply(i) for i in p.target.stage.instructions]


def test_global_arg_needs_redeclaration() -> None:
    scope, out = run_stage("ARG V=1\nFROM a\nWORKDIR /$V\nARG V\nWORKDIR /$V\n")
    assert [o.path for o in out if isinstance(o, Workdir)] == ["/", "/1"]


def test_arg_default_and_build_arg() -> None:
    scope, out = run_stage("FROM a\nARG A=x B=${A}y C\nLABEL l=$A$B$C\n", {"A": "$HOME"})
    arg, label = out
    assert isinstance(arg, Arg) and isinstance(label, Label)
    assert [(d.key, d.value) for d in arg.args] == [("A", "$HOME"), ("B", "$HOMEy"), ("C", None)]
    assert label.pairs[0].value == "$HOME$HOMEy"


def test_env_overrides_arg_whatever_the_order() -> None:
    scope, out = run_stage("FROM a\nARG X=arg\nENV X=env\nARG X=again\nWORKDIR /$X\n", {}, {"PATH": "/bin"})
    assert isinstance(out[-1], Workdir) and out[-1].path == "/env"
    scope, out = run_stage("FROM a\nARG PATH=/mine\nRUN x\nWORKDIR $PATH\n", {}, {"PATH": "/bin"})
    assert isinstance(out[-1], Workdir) and out[-1].path == "/bin"
    assert scope.image_env() == {"PATH": "/bin"}


def test_env_pairs_see_previous_values() -> None:
    scope, out = run_stage("FROM a\nENV A=1\nENV A=2 B=$A\nENV C=\"$A $B\" D=${UNSET}z\n")
    assert isinstance(out[1], Env)
    assert scope.env == {"A": "2", "B": "1", "C": "2 1", "D": "z"}


def test_run_environment_and_proxies() -> None:
    scope, _ = run_stage("FROM a\nARG A=1\nENV B=2\n", {"http_proxy": "http://p:3128", "A": "9"})
    assert scope.run_environment() == {"B": "2", "A": "9", "http_proxy": "http://p:3128"}
    assert "http_proxy" not in scope.variables()


def test_expose_splits_words_and_copy_expands() -> None:
    _, out = run_stage('FROM a\nENV P="80 443/tcp" D=/srv\nEXPOSE $P\nCOPY --chown=$U:$U a $D/\n'
                       'COPY <<EOF <<\'RAW\' $D/\n"$D"\nEOF\n$D\nRAW\n')
    expose, copy, heredocs = out[1], out[2], out[3]
    assert isinstance(expose, Expose) and expose.ports == ["80", "443/tcp"]
    assert isinstance(copy, Copy) and (copy.chown, copy.dest) == (":", "/srv/")
    assert isinstance(heredocs, Copy) and [c.data for c in heredocs.contents] == ['"/srv"\n', "$D\n"]


def test_run_mount_values_expand_and_errors_name_the_line() -> None:
    _, out = run_stage("FROM a\nARG T=cache\nRUN --mount=type=$T,target=/c x\n")
    assert isinstance(out[1], Run) and out[1].mounts[0].type == "cache"
    with pytest.raises(DockerfileError, match=r'^Dockerfile:3: unsupported mount type "nope"'):
        run_stage("FROM a\nARG T=nope\nRUN --mount=type=$T,target=/c x\n")
    with pytest.raises(DockerfileError, match=r"^Dockerfile:2: failed to process"):
        run_stage("FROM a\nWORKDIR ${X\n")


def test_backtick_escape_reaches_the_scope() -> None:
    _, out = run_stage("# escape=`\nFROM a\nENV D=C:\\dir\nWORKDIR $D`$x\n")
    assert isinstance(out[1], Workdir) and out[1].path == "C:\\dir$x"


def test_onbuild_trigger_parsing() -> None:
    from pallet.build import parse_trigger

    copy = parse_trigger("COPY --from=builder /a /b")
    assert isinstance(copy, Copy) and copy.from_ == "builder"
    run = parse_trigger("RUN <<EOF\necho $X\nEOF")
    assert isinstance(run, Run) and run.heredocs[0].content == "echo $X\n"
    with pytest.raises(DockerfileError, match="^Dockerfile:7: FROM isn't allowed as an ONBUILD trigger$"):
        parse_trigger("FROM x", line=7)
    with pytest.raises(DockerfileError, match="single expression"):
        parse_trigger("RUN a\nRUN b")
