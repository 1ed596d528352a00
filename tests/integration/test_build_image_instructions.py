"""Dockerfile instructions through `pallet build`: each case asserts files in the image (by running
it) and its config fields, as BuildKit produces them."""

from __future__ import annotations

import test_build_support as support
from test_build_support import Build

build = support.build  # fixture
pytestmark = support.pytestmark

PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def test_env_pairs_and_expansion(build: Build) -> None:
    build('FROM busybox\nENV A=1 B="two words"\nENV C ${A}-$B\nRUN echo "$C" > /c\n')
    assert build.sh("cat /c; echo $B") == "1-two words\ntwo words\n"
    assert build.inspect()["Config"]["Env"] == [PATH, "A=1", "B=two words", "C=1-two words"]
    assert [h["created_by"] for h in build.new_history()][:2] == ["ENV A=1 B=two words", "ENV C=1-two words"]


def test_env_replaces_in_place(build: Build) -> None:
    build("FROM busybox\nENV PATH=/x:$PATH A=1\nENV A=2\n")
    assert build.inspect()["Config"]["Env"] == ["PATH=/x:" + PATH[5:], "A=2"]


def test_variable_forms(build: Build) -> None:
    build('FROM busybox\nARG SET=v\nENV A=${UNSET:-dflt} B=${SET:+alt} C=${SET-x} D="${UNSET}" E=\\$SET\n')
    env = build.inspect()["Config"]["Env"]
    assert env[1:] == ["A=dflt", "B=alt", "C=v", "D=", "E=$SET"]


def test_label_and_cli_label(build: Build) -> None:
    build('FROM busybox\nLABEL a=1 "b c"="d e"\nLABEL a=2\n', "--label", "cli=yes", "--label", "a=cli")
    assert build.inspect()["Config"]["Labels"] == {"a": "cli", "b c": "d e", "cli": "yes"}
    assert [h["created_by"] for h in build.new_history()] == ["LABEL a=1 b c=d e", "LABEL a=2"]


def test_cmd_exec_form(build: Build) -> None:
    build('FROM busybox\nCMD ["echo", "hello", "world"]\n')
    cfg = build.inspect()["Config"]
    assert cfg["Cmd"] == ["echo", "hello", "world"] and cfg["ArgsEscaped"] is True
    assert build.pallet.out("run", "--rm", "t") == "hello world\n"
    assert build.new_history()[-1] == {"created_by": 'CMD ["echo" "hello" "world"]', "comment":
                                       "buildkit.dockerfile.v0", "empty_layer": True,
                                       "created": build.new_history()[-1]["created"]}


def test_cmd_shell_form(build: Build) -> None:
    build("FROM busybox\nCMD echo $HOME from shell\n")
    assert build.inspect()["Config"]["Cmd"] == ["/bin/sh", "-c", "echo $HOME from shell"]
    assert build.pallet.out("run", "--rm", "t") == "/root from shell\n"


def test_entrypoint_resets_inherited_cmd(build: Build) -> None:
    build('FROM busybox\nENTRYPOINT ["echo", "ep"]\n')
    cfg = build.inspect()["Config"]
    assert cfg["Entrypoint"] == ["echo", "ep"] and cfg["Cmd"] is None
    assert build.pallet.out("run", "--rm", "t", "arg") == "ep arg\n"


def test_entrypoint_keeps_cmd_of_the_stage(build: Build) -> None:
    build('FROM busybox\nCMD ["x"]\nENTRYPOINT echo shell-ep\n')
    cfg = build.inspect()["Config"]
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "echo shell-ep"] and cfg["Cmd"] == ["x"]
    assert build.new_history()[-1]["created_by"] == 'ENTRYPOINT ["/bin/sh" "-c" "echo shell-ep"]'


def test_expose(build: Build) -> None:
    build("FROM busybox\nARG P=8080\nEXPOSE 80 $P/udp 9000-9001\n")
    assert build.inspect()["Config"]["ExposedPorts"] == {
        "80/tcp": {}, "8080/udp": {}, "9000/tcp": {}, "9001/tcp": {}}
    # BuildKit sorts the words as written ("$P/udp" first), then expands them.
    assert build.new_history()[-1]["created_by"] == "EXPOSE [8080/udp 80/tcp 9000/tcp 9001/tcp]"


def test_volume(build: Build) -> None:
    build('FROM busybox\nVOLUME ["/data", "/logs"]\nVOLUME /more\nRUN mkdir /data && echo kept > /data/f\n')
    assert build.inspect()["Config"]["Volumes"] == {"/data": {}, "/logs": {}, "/more": {}}
    assert [h["created_by"] for h in build.new_history()][:2] == ["VOLUME [/data /logs]", "VOLUME [/more]"]


def test_user_with_passwd_entry(build: Build) -> None:
    build("FROM busybox\nUSER nobody\nRUN id -un > /tmp/who; touch /tmp/owned\n")
    assert build.inspect()["Config"]["User"] == "nobody"
    assert build.sh("cat /tmp/who; stat -c %U /tmp/owned") == "nobody\nnobody\n"


def test_user_without_passwd_entry(build: Build) -> None:
    build("FROM busybox\nUSER 4242:4343\nRUN id -u > /tmp/uid; id -g >> /tmp/uid; echo $HOME >> /tmp/uid\n")
    assert build.inspect()["Config"]["User"] == "4242:4343"
    assert build.sh("cat /tmp/uid", "t", "-u", "0") == "4242\n4343\n/\n"


def test_user_group_by_name(build: Build) -> None:
    build("FROM busybox\nUSER daemon:nogroup\nRUN id > /tmp/id\n")
    assert "uid=1(daemon) gid=65534(nogroup)" in build.sh("cat /tmp/id", "t", "-u", "0")


def test_workdir_created(build: Build) -> None:
    build("FROM busybox\nWORKDIR /app/sub\nWORKDIR rel\nRUN pwd > /pwd\n")
    assert build.inspect()["Config"]["WorkingDir"] == "/app/sub/rel"
    assert build.sh("cat /pwd; pwd; stat -c %a /app/sub/rel") == "/app/sub/rel\n/app/sub/rel\n755\n"
    created = [h for h in build.new_history() if h["created_by"].startswith("WORKDIR")]
    assert [h["created_by"] for h in created] == ["WORKDIR /app/sub", "WORKDIR /app/sub/rel"]
    assert not any(h.get("empty_layer") for h in created)


def test_workdir_expansion_and_owner(build: Build) -> None:
    build("FROM busybox\nENV D=/srv\nUSER nobody\nWORKDIR $D/data\n")
    assert build.inspect()["Config"]["WorkingDir"] == "/srv/data"
    assert build.sh("stat -c %U /srv/data") == "nobody\n"


def test_workdir_root_makes_no_layer(build: Build) -> None:
    build("FROM busybox\nWORKDIR /\n")
    assert build.new_history() == [{"created_by": "WORKDIR /", "comment": "buildkit.dockerfile.v0",
                                    "empty_layer": True, "created": build.new_history()[0]["created"]}]


def test_stopsignal(build: Build) -> None:
    build("FROM busybox\nSTOPSIGNAL SIGUSR1\n")
    assert build.inspect()["Config"]["StopSignal"] == "SIGUSR1"
    assert build.new_history()[-1]["created_by"] == "STOPSIGNAL SIGUSR1"


def test_healthcheck(build: Build) -> None:
    build("FROM busybox\n"
          "HEALTHCHECK --interval=5s --timeout=3s --retries=4 CMD wget -q localhost || exit 1\n")
    assert build.inspect()["Config"]["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost || exit 1"], "Interval": 5_000_000_000,
        "Timeout": 3_000_000_000, "Retries": 4}
    assert build.new_history()[-1]["created_by"] == (
        "HEALTHCHECK {Test:[CMD-SHELL wget -q localhost || exit 1] Interval:5s Timeout:3s StartPeriod:0s "
        "StartInterval:0s Retries:4}")


def test_healthcheck_none_and_exec(build: Build) -> None:
    build('FROM busybox\nHEALTHCHECK CMD ["true"]\n', tag="hc")
    assert build.inspect("hc")["Config"]["Healthcheck"] == {"Test": ["CMD", "true"]}
    build("FROM hc\nHEALTHCHECK NONE\n")
    assert build.inspect()["Config"]["Healthcheck"] == {"Test": ["NONE"]}


def test_shell(build: Build) -> None:
    build('FROM busybox\nSHELL ["/bin/sh", "-ec"]\nRUN echo $0 $- > /flags\nCMD echo via shell\n')
    cfg = build.inspect()["Config"]
    assert cfg["Shell"] == ["/bin/sh", "-ec"] and cfg["Cmd"] == ["/bin/sh", "-ec", "echo via shell"]
    assert "e" in build.sh("cat /flags").split()[1]
    history = [h["created_by"] for h in build.new_history()]
    assert history[0] == "SHELL [/bin/sh -ec]" and history[1].startswith("RUN /bin/sh -ec echo $0")


def test_maintainer(build: Build) -> None:
    build("FROM busybox\nMAINTAINER someone <a@b>\n")
    assert build.inspect()["Author"] == "someone <a@b>"
    assert build.new_history()[-1]["created_by"] == "MAINTAINER someone <a@b>"


def test_run_exec_form_and_continuation(build: Build) -> None:
    build('FROM busybox\nRUN ["sh", "-c", "echo exec > /e"]\nRUN echo one \\\n    two > /c\n')
    assert build.sh("cat /e /c") == "exec\none two\n"
    assert build.new_history()[0]["created_by"] == "RUN sh -c echo exec > /e # buildkit"


def test_escape_directive(build: Build) -> None:
    build("# escape=`\nFROM busybox\nRUN echo a `\n  b > /x\n")
    assert build.sh("cat /x") == "a b\n"


def test_history_of_every_instruction(build: Build) -> None:
    build('FROM busybox\nARG V=1\nENV E=2\nRUN echo $V$E > /f\nCOPY a /a\nWORKDIR /w\nUSER nobody\n'
          'EXPOSE 80\nLABEL l=v\nCMD ["c"]\n', files={"a": "a"})
    got = [(h["created_by"], bool(h.get("empty_layer"))) for h in build.new_history()]
    assert got == [("ARG V=1", True), ("ENV E=2", True),
                   ("RUN |1 V=1 /bin/sh -c echo $V$E > /f # buildkit", False),
                   ("COPY a /a # buildkit", False), ("WORKDIR /w", False), ("USER nobody", True),
                   ("EXPOSE [80/tcp]", True), ("LABEL l=v", True), ('CMD ["c"]', True)]
    cfg = build.config()
    assert len(cfg["rootfs"]["diff_ids"]) == 1 + 3  # busybox + RUN, COPY, WORKDIR
    assert all(h.get("created") for h in cfg["history"]) and cfg["created"] == cfg["history"][-1]["created"]


def test_from_scratch(build: Build) -> None:
    build('FROM scratch\nCOPY --from=busybox /bin/busybox /bin/sh\nCMD ["/bin/sh", "-c", "echo $PATH"]\n')
    assert build.pallet.out("run", "--rm", "t") == PATH[5:] + "\n"
    cfg = build.inspect()["Config"]
    assert cfg["WorkingDir"] == "/" and cfg["Env"] == [PATH]
    assert len(build.config()["rootfs"]["diff_ids"]) == 1


def test_run_deletions_become_whiteouts(build: Build) -> None:
    build("FROM busybox\nRUN mkdir -p /home/a && touch /home/a/old\n"
          "RUN rm /etc/group && rm -rf /home && mkdir -p /home/b && touch /home/b/new\n")
    check = "test -e /etc/group || echo gone; find /home | sort"
    assert build.sh(check) == "gone\n/home\n/home/b\n/home/b/new\n"
    archive = build.ctx.parent / "t.tar"
    build.pallet("save", "-o", str(archive), "t")
    build.pallet("rmi", "t")
    build.pallet("builder", "prune", "-af")
    build.pallet("load", "-i", str(archive))
    assert build.sh(check) == "gone\n/home\n/home/b\n/home/b/new\n"  # the same after an export
