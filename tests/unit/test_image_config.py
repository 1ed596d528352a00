"""Image config helpers and docker's --change lines (no root, no store)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from pallet.images.config import (
    ChangeError,
    apply_changes,
    host_architecture,
    manifest_for,
    new_config,
    rfc3339,
    serialize,
)
from pallet.images.store import ImageError


def changed(*changes: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = dict(base or {})
    apply_changes(config, list(changes))
    return config


def test_cmd_and_entrypoint_forms() -> None:
    assert changed('CMD ["sh", "-c", "echo hi"]')["Cmd"] == ["sh", "-c", "echo hi"]
    assert changed("CMD echo $HOME")["Cmd"] == ["/bin/sh", "-c", "echo $HOME"]
    assert changed("CMD [not json")["Cmd"] == ["/bin/sh", "-c", "[not json"]
    cfg = changed('ENTRYPOINT ["/bin/app"]', base={"Cmd": ["old"]})
    assert cfg["Entrypoint"] == ["/bin/app"] and cfg["Cmd"] is None  # a new entrypoint drops the old cmd
    cfg = changed('CMD ["x"]', "ENTRYPOINT run it")
    assert cfg["Entrypoint"] == ["/bin/sh", "-c", "run it"] and cfg["Cmd"] == ["x"]


def test_env_forms_and_expansion() -> None:
    cfg = changed("ENV A=1 B=\"two words\" C=a\\ b", "ENV D hello world", "ENV A=3 E=${A}x",
                  base={"Env": ["PATH=/bin"]})
    assert cfg["Env"] == ["PATH=/bin", "A=3", "B=two words", "C=a b", "D=hello world", "E=1x"]
    assert changed("ENV PATH=$PATH:/x", base={"Env": ["PATH=/bin"]})["Env"] == ["PATH=/bin:/x"]
    assert changed("ENV Q='$PATH' R=${NOPE:-dflt}")["Env"] == ["Q=$PATH", "R=dflt"]


def test_expose_label_volume_workdir_user_stopsignal_onbuild() -> None:
    cfg = changed("EXPOSE 80 53/udp 8000-8001", "LABEL a=b \"c d\"=e", "LABEL legacy value here",
                  "VOLUME /data /logs", 'VOLUME ["/json"]', "WORKDIR /app", "WORKDIR sub",
                  "USER nobody", "STOPSIGNAL SIGINT", "ONBUILD RUN make")
    assert cfg["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert cfg["Labels"] == {"a": "b", "c d": "e", "legacy": "value here"}
    assert cfg["Volumes"] == {"/data": {}, "/logs": {}, "/json": {}}
    assert cfg["WorkingDir"] == "/app/sub"
    assert cfg["User"] == "nobody" and cfg["StopSignal"] == "SIGINT"
    assert cfg["OnBuild"] == ["RUN make"]


def test_healthcheck() -> None:
    cfg = changed("HEALTHCHECK --interval=5s --retries=3 CMD curl -f http://localhost/")
    assert cfg["Healthcheck"] == {"Test": ["CMD-SHELL", "curl -f http://localhost/"],
                                  "Interval": 5_000_000_000, "Retries": 3}
    assert changed("HEALTHCHECK NONE")["Healthcheck"] == {"Test": ["NONE"]}


@pytest.mark.parametrize(("change", "message"), [
    ("FOO bar", "dockerfile parse error on line 1: unknown instruction: FOO"),
    ("RUN true", "run is not a valid change command"),
    ("ENV", "ENV requires at least one argument"),
    ("ENV a=1 b", 'Syntax error - can\'t find = in "b". Must be of the form: name=value'),
    ("EXPOSE 80/xyz", "invalid proto: xyz"),
    ("ONBUILD FROM x", "FROM isn't allowed as an ONBUILD trigger"),
])
def test_rejected_changes(change: str, message: str) -> None:
    with pytest.raises(ChangeError) as err:
        changed(change)
    assert str(err.value) == message
    assert isinstance(err.value, ImageError)


def test_unknown_instruction_reports_its_line() -> None:
    with pytest.raises(ChangeError, match="on line 2: unknown instruction: BOGUS"):
        changed("CMD sh", "BOGUS x")


def test_config_and_manifest_serialisation() -> None:
    cfg = new_config(["sha256:" + "a" * 64], created="2024-01-02T03:04:05Z", runtime={"Cmd": ["sh"]},
                     history=[{"created": "2024-01-02T03:04:05Z", "comment": "x"}])
    assert cfg["architecture"] == host_architecture() and cfg["os"] == "linux"
    data = serialize(cfg)
    assert data == serialize(json.loads(data))  # stable: the same dict always gives the same bytes
    assert b" " not in data.replace(b"2024", b"")
    layer = ("application/vnd.oci.image.layer.v1.tar", "sha256:" + "b" * 64, 10)
    manifest = json.loads(manifest_for(data, [layer]))
    assert manifest["config"]["size"] == len(data)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"


def test_rfc3339_like_go() -> None:
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
