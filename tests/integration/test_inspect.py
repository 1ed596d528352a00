"""`inspect` of containers: docker's key sets (checked against the Engine API swagger), Go templates
and `-f json`, sizes with `-s`, `--type`, and docker's partial-failure behaviour."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import Pallet, needs_root

pytestmark = [needs_root(), pytest.mark.integration]

SWAGGER = Path(__file__).resolve().parents[3] / "shared/api/engine-api-v1.45.yaml"

# Keys docker leaves out while empty (json:",omitempty" in moby's types).
OMIT_HOST_CONFIG = {"Annotations", "KernelMemoryTCP", "Mounts", "StorageOpt", "Tmpfs", "Sysctls", "Init"}
OMIT_CONFIG = {
    "ExposedPorts",
    "Healthcheck",
    "ArgsEscaped",
    "NetworkDisabled",
    "MacAddress",
    "StopSignal",
    "StopTimeout",
    "Shell",
}


def _lines() -> list[str]:
    if not SWAGGER.exists():
        pytest.skip(f"the Engine API swagger is not at {SWAGGER}")
    return SWAGGER.read_text().splitlines()


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _keys_under(lines: list[str], at: int) -> list[str]:
    """The keys one level below the `properties:` line at index `at` (block scalars are deeper)."""
    level = _indent(lines[at])
    keys = []
    for line in lines[at + 1 :]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if _indent(line) <= level:
            break
        m = re.match(r"\s*([A-Za-z][\w-]*):", line)
        if _indent(line) == level + 2 and m:
            keys.append(m.group(1))
    return keys


def swagger_properties(name: str) -> list[str]:
    """Property names of a definition, following `allOf` references (a tiny YAML reader: the
    swagger's layout is regular, and the test venv has no YAML parser)."""
    lines = _lines()
    start = lines.index(f"  {name}:")
    keys: list[str] = []
    for i in range(start + 1, len(lines)):
        line = lines[i]
        if line.strip() and _indent(line) <= 2:
            break
        ref = re.match(r"\s{6}- \$ref: \"#/definitions/(\w+)\"", line)
        if ref:
            keys += swagger_properties(ref.group(1))
        if line.strip() == "properties:" and _indent(line) in (4, 8):
            keys += _keys_under(lines, i)
    return keys


def inspect_response_properties() -> list[str]:
    lines = _lines()
    title = next(i for i, line in enumerate(lines) if 'title: "ContainerInspectResponse"' in line)
    at = next(i for i in range(title, len(lines)) if lines[i].strip() == "properties:")
    return _keys_under(lines, at)


def inspect(p: Pallet, *args: str) -> list[dict]:  # type: ignore[type-arg]
    return json.loads(p.out("inspect", *args))  # type: ignore[no-any-return]


def test_key_sets_are_dockers(busybox: Pallet) -> None:
    busybox("create", "--name", "c1", "--network", "none", "-l", "a=b", "busybox", "sh", "-c", "echo hi")
    [data] = inspect(busybox, "c1")
    top = inspect_response_properties()
    assert set(data) == set(top) - {"SizeRw", "SizeRootFs"}
    assert list(data)[:3] == ["Id", "Created", "Path"]
    assert set(data["State"]) == set(swagger_properties("ContainerState")) - {"Health"}
    assert set(data["Config"]) == set(swagger_properties("ContainerConfig")) - OMIT_CONFIG
    hc_keys = set(swagger_properties("HostConfig"))
    assert set(data["HostConfig"]) <= hc_keys
    assert hc_keys - set(data["HostConfig"]) <= OMIT_HOST_CONFIG
    assert set(data["NetworkSettings"]) == set(swagger_properties("NetworkSettings"))
    assert set(data["NetworkSettings"]["Networks"]["none"]) == set(swagger_properties("EndpointSettings"))
    assert set(data["GraphDriver"]) == set(swagger_properties("GraphDriverData"))
    # values as docker shows them for `docker create --network none`
    assert data["Name"] == "/c1" and data["Path"] == "sh" and data["Args"] == ["-c", "echo hi"]
    assert data["State"]["Status"] == "created" and data["State"]["StartedAt"].startswith("0001")
    assert data["HostConfig"]["NetworkMode"] == "none" and data["HostConfig"]["ShmSize"] == 67108864
    assert data["HostConfig"]["MaskedPaths"] and data["HostConfig"]["ReadonlyPaths"]
    assert data["Config"]["Labels"] == {"a": "b"} and data["Config"]["Image"] == "busybox"
    assert data["NetworkSettings"]["Ports"] == {} and data["Mounts"] == []
    assert data["Image"].startswith("sha256:") and data["ExecIDs"] is None
    # the container section of the generic inspect equals `container inspect`
    assert json.loads(busybox.out("container", "inspect", "c1")) == [data]


def test_format_templates_and_json(busybox: Pallet) -> None:
    busybox("create", "--name", "c1", "-l", "a=b", "busybox", "true")
    out = busybox.out(
        "inspect", "-f", '{{.Name}} {{.State.Status}} {{json .Config.Cmd}} {{index .Config.Labels "a"}}', "c1"
    )
    assert out == '/c1 created ["true"] b\n'
    assert busybox.out("inspect", "--format", "{{.Config.Nope}}", "c1") == "<no value>\n"
    lines = busybox.out("inspect", "-f", "json", "c1", "c1").splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["Name"] == "/c1"
    p = busybox("inspect", "-f", "{{.Name", "c1", check=False)
    assert p.returncode == 64 and b"template parsing error: " in p.stderr and p.stdout == b""
    # an image through the generic inspect, and the template applies to it too
    assert busybox.out("inspect", "-f", "{{.Os}}", "busybox") == "linux\n"


def test_several_names_and_types(busybox: Pallet) -> None:
    busybox("create", "--name", "c1", "busybox")
    p = busybox("inspect", "c1", "nosuch", check=False)
    assert p.returncode == 1
    assert [o["Name"] for o in json.loads(p.stdout)] == ["/c1"]
    assert p.stderr.decode().strip() == "Error: No such object: nosuch"
    p = busybox("inspect", "--type", "image", "c1", check=False)
    assert p.returncode == 1 and b"No such image: c1" in p.stderr and json.loads(p.stdout) == []
    p = busybox("inspect", "--type", "container", "busybox", check=False)
    assert p.returncode == 1 and b"No such container: busybox" in p.stderr
    p = busybox("inspect", "--type", "bogus", "c1", check=False)
    assert p.returncode != 0 and b"bogus" in p.stderr
    p = busybox("container", "inspect", "nosuch", check=False)
    assert p.returncode == 1 and b"No such container: nosuch" in p.stderr


def test_sizes_with_s(busybox: Pallet, tmp_path: Path) -> None:
    busybox("create", "--name", "c1", "busybox")
    (tmp_path / "blob").write_bytes(b"x" * 1000)
    busybox("cp", str(tmp_path / "blob"), "c1:/blob")
    [data] = inspect(busybox, "-s", "c1")
    image_size = json.loads(busybox.out("image", "inspect", "busybox"))[0]["Size"]
    assert data["SizeRw"] == 1000
    assert data["SizeRootFs"] == 1000 + image_size
    assert list(data).index("SizeRw") == list(data).index("GraphDriver") + 1
    assert "SizeRw" not in inspect(busybox, "c1")[0]
    assert busybox.out("inspect", "-s", "-f", "{{.SizeRw}}", "c1") == "1000\n"


def test_port_without_published_ports(busybox: Pallet) -> None:
    busybox("run", "-d", "--name", "up", "busybox", "sleep", "600")
    assert busybox.out("port", "up") == ""  # nothing published: nothing listed, as docker
    assert json.loads(busybox.out("inspect", "-f", "{{json .NetworkSettings.Ports}}", "up")) == {}
    for args, message in [
        (["up", "80"], "No public port '80' published for up"),
        (["up", "80/udp"], "No public port '80/udp' published for up"),
        (["up", "abc"], "invalid port (abc)"),
        (["nosuch"], "No such container: nosuch"),
    ]:
        p = busybox("port", *args, check=False)
        assert p.returncode == 1 and message in p.stderr.decode(), (args, p.stderr)
