"""ARG scoping, stages and targets, ONBUILD, RUN mounts and networks, contexts, and the command's flags."""

from __future__ import annotations

import io
import os
import re
import tarfile
from pathlib import Path

import test_build_support as support
from test_build_support import Build

build = support.build  # fixture
PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
pytestmark = support.pytestmark


def test_arg_default_override_and_not_in_image(build: Build) -> None:
    build("FROM busybox\nARG A=default\nARG B\nRUN echo $A-$B > /args\n", "--build-arg", "B=given")
    assert build.sh("cat /args; echo env:$A") == "default-given\nenv:\n"
    assert build.inspect()["Config"]["Env"] == [PATH]
    run = [h["created_by"] for h in build.new_history() if h["created_by"].startswith("RUN")]
    assert run == ["RUN |2 A=default B=given /bin/sh -c echo $A-$B > /args # buildkit"]


def test_arg_from_environment(build: Build) -> None:
    build.pallet.env["FROM_ENV"] = "env-value"
    build("FROM busybox\nARG FROM_ENV\nRUN echo $FROM_ENV > /v\n", "--build-arg", "FROM_ENV")
    assert build.sh("cat /v") == "env-value\n"


def test_global_args_and_scoping_across_stages(build: Build) -> None:
    build("ARG BASE=busybox\nARG V=global\nFROM $BASE AS one\nRUN echo one:$V > /one\n"
          "FROM $BASE AS two\nARG V\nRUN echo two:$V > /two\nARG LOCAL=l\n"
          "FROM two\nRUN echo three:$V:$LOCAL > /three\nCOPY --from=one /one /one\n", "--build-arg", "V=cli")
    assert build.sh("cat /one /two /three") == "one:\ntwo:cli\nthree:cli:l\n"


def test_env_overrides_arg(build: Build) -> None:
    build("FROM busybox\nENV X=env\nARG X=arg\nRUN echo $X > /x\n", "--build-arg", "X=cli")
    assert build.sh("cat /x") == "env\n"


def test_unused_build_arg_warning(build: Build) -> None:
    log = build.log("FROM busybox\n", "--build-arg", "NOBODY=1")
    assert "[Warning] One or more build-args [NOBODY] were not consumed" in log


def test_target_skips_unneeded_stages(build: Build) -> None:
    df = ("FROM busybox AS broken\nRUN exit 1\nFROM busybox AS base\nRUN echo base > /b\n"
          "FROM base AS final\nRUN echo final > /f\n")
    build(df, "--target", "base")
    assert build.sh("cat /b; test -e /f || echo no-final") == "base\nno-final\n"
    assert build(df, check=False).returncode == 0  # `broken` is not needed by the last stage either


def test_onbuild_from_image_and_stage(build: Build) -> None:
    build("FROM busybox\nONBUILD RUN echo triggered > /ob\nONBUILD COPY f /from-trigger\n", tag="obbase",
          files={"f": "ctx\n"})
    triggers = ["RUN echo triggered > /ob", "COPY f /from-trigger"]
    assert build.inspect("obbase")["Config"]["OnBuild"] == triggers
    log = build.log("FROM obbase\nRUN echo child > /c\n")
    assert "[1/4] FROM" in log and "[2/4] ONBUILD RUN echo triggered > /ob" in log
    assert build.sh("cat /ob /from-trigger /c") == "triggered\nctx\nchild\n"
    assert build.inspect()["Config"]["OnBuild"] is None
    build("FROM busybox AS s\nONBUILD RUN echo via-stage > /s\nFROM s\nRUN true\n")
    assert build.sh("cat /s") == "via-stage\n"


def test_run_cache_mount_persists(build: Build) -> None:
    df = "FROM busybox\nARG N\nRUN --mount=type=cache,target=/cache,uid=65534 echo $N >> /cache/log; " \
         "cat /cache/log > /seen; stat -c %u /cache >> /seen\n"
    build(df, "--build-arg", "N=1")
    build(df, "--build-arg", "N=2")
    assert build.sh("cat /seen; test -e /cache/log || echo not-in-image") == "1\n2\n65534\nnot-in-image\n"


def test_run_bind_tmpfs_and_secret_mounts(build: Build, tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret")
    build("FROM busybox AS src\nRUN echo from-stage > /data\nFROM busybox\n"
          "RUN --mount=type=bind,source=dir,target=/b cat /b/f > /bind\n"
          "RUN --mount=type=bind,from=src,source=/data,target=/s cat /s > /stage\n"
          "RUN --mount=type=tmpfs,target=/t echo x > /t/y && mount | grep -c ' /t ' > /tmpfs\n"
          "RUN --mount=type=secret,id=tok cat /run/secrets/tok > /seen-secret; "
          "stat -c %a /run/secrets/tok >> /seen-secret\n"
          "RUN --mount=type=secret,id=tok,env=TOK,target=/s2 echo $TOK > /seen-env\n",
          "--secret", f"id=tok,src={secret}", files={"dir/f": "bound\n"})
    out = build.sh("cat /bind /stage /tmpfs /seen-secret /seen-env; ls /run/secrets /b /s /t 2>&1 | wc -l")
    assert out == "bound\nfrom-stage\n1\ns3cret400\ns3cret\n4\n"  # nothing mounted is left in the image
    assert not any("s3cret" in str(h) for h in build.history())


def test_missing_required_secret(build: Build) -> None:
    res = build("FROM busybox\nRUN --mount=type=secret,id=nope,required cat /run/secrets/nope\n", check=False)
    assert res.returncode == 1 and b"secret nope not found" in res.stderr


def test_run_network_modes(build: Build) -> None:
    build("FROM busybox\nRUN ls /sys/class/net > /none; cat /etc/hosts > /hosts; hostname > /name\n"
          "RUN --network=host ls /sys/class/net | wc -l > /host\n")
    out = build.sh("cat /none /name; cat /host; grep -c buildkitsandbox /hosts").split("\n")
    assert out[0] == "lo" and out[1] == "buildkitsandbox" and int(out[2]) >= 2 and out[3] == "1"



def test_mount_stubs_leave_no_layer_content(build: Build) -> None:
    # /etc/hosts, /run/secrets/x and /var/cache/c are made only as mount points: the layer stays empty.
    build("FROM busybox\nRUN --mount=type=secret,id=x --mount=type=cache,target=/var/cache/c true\n")
    layer = build.config()["rootfs"]["diff_ids"][-1]
    assert layer == "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"  # an empty tar


def test_quiet_iidfile_and_tags(build: Build, tmp_path: Path) -> None:
    iid = tmp_path / "iid"
    res = build("FROM busybox\nRUN true\n", "-q", "--iidfile", str(iid), "-t", "second:v2", tag="first")
    image_id = res.stdout.decode().strip()
    assert image_id.startswith("sha256:") and res.stderr == b"" and iid.read_text() == image_id
    assert sorted(build.inspect(image_id)["RepoTags"]) == ["first:latest", "second:v2"]


def test_dockerfile_outside_context_with_its_own_ignore(build: Build, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "Build.file").write_text("FROM busybox\nCOPY . /ctx\n")
    (elsewhere / "Build.file.dockerignore").write_text("skip\n")
    build(None, "-f", str(elsewhere / "Build.file"), files={"skip": "s", "keep": "k"})
    assert build.sh("ls /ctx") == "keep\n"


def test_dockerfile_from_stdin(build: Build) -> None:
    build(None, "-f", "-", input=b"FROM busybox\nCOPY a /a\n", files={"a": "from-context\n"})
    assert build.sh("cat /a") == "from-context\n"


def test_context_tar_on_stdin(build: Build) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in (("Dockerfile", b"FROM busybox\nCOPY f /f\n"), ("f", b"in-tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    build(None, context="-", input=buf.getvalue())
    assert build.sh("cat /f") == "in-tar\n"


def test_bare_dockerfile_on_stdin(build: Build) -> None:
    build(None, context="-", input=b"FROM busybox\nRUN echo nocontext > /n\n")
    assert build.sh("cat /n") == "nocontext\n"


def test_platform_flag(build: Build) -> None:
    machine = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)
    build("FROM busybox\n", "--platform", f"linux/{arch}")
    other = "linux/s390x" if arch != "s390x" else "linux/amd64"
    res = build("FROM busybox\n", "--platform", other, check=False)
    assert res.returncode == 1 and b"not supported" in res.stderr


def test_progress_modes(build: Build) -> None:
    tty = build.log("FROM busybox\nRUN echo shown\n", "--progress=tty")
    assert "[+] FINISHED" in tty and " => [2/2] RUN echo shown" in tty and "#" not in tty
    plain = build.log("FROM busybox\nRUN echo shown\n", "--no-cache")
    assert "#5 [2/2] RUN echo shown\n#5 0." in plain and re.search(r"^#5 DONE \d+\.\ds$", plain, re.M)
    assert build.log("FROM busybox\n", "-q") == ""
