"""docs/deploy.md: every configuration snippet parses, and says what the page says it says
(the replica, the key file, a grace period longer than the kernel's SIGTERM deadline, culling)."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from traitlets.config import Config

from persistent_kernel.kernel import PersistentKernel

DEPLOY = Path(__file__).resolve().parent.parent / "docs" / "deploy.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DEPLOY.read_text(), flags=re.S)


def test_every_block_is_of_a_language_checked_here() -> None:
    fences = re.findall(r"^```(\w*)$", DEPLOY.read_text(), flags=re.M)
    languages = fences[0::2]  # opening fences; the closing ones have no language
    assert len(fences) % 2 == 0 and all(not closing for closing in fences[1::2])
    assert languages and set(languages) <= {"yaml", "python", "bash", "dockerfile"}, languages


def test_yaml_snippets_parse_and_carry_the_replica_the_key_and_a_long_enough_grace_period() -> None:
    documents = [yaml.safe_load(text) for text in blocks("yaml")]
    assert len(documents) == 2
    z2jh, pod = documents
    env = z2jh["singleuser"]["extraEnv"]
    assert env["PERSISTENT_KERNEL_REPLICA"].startswith("s3://") and env["PERSISTENT_KERNEL_KEY_FILE"]
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"]  # never a literal secret
    mounts = {m["mountPath"] for m in z2jh["singleuser"]["storage"]["extraVolumeMounts"]}
    assert str(Path(env["PERSISTENT_KERNEL_KEY_FILE"]).parent) in mounts
    deadline = PersistentKernel.termination_deadline.default_value
    assert z2jh["singleuser"]["extraPodConfig"]["terminationGracePeriodSeconds"] > deadline
    assert z2jh["cull"]["enabled"] is True and z2jh["cull"]["timeout"] > 0
    assert pod["kind"] == "Pod" and pod["spec"]["terminationGracePeriodSeconds"] > deadline
    (container,) = pod["spec"]["containers"]
    names = {e["name"] for e in container["env"]}
    assert {"PERSISTENT_KERNEL_REPLICA", "PERSISTENT_KERNEL_SESSION", "PERSISTENT_KERNEL_KEY_FILE"} <= names


def run_config(text: str) -> Config:
    c = Config()
    exec(compile(ast.parse(text), "<deploy.md>", "exec"), {"c": c})  # noqa: S102 - our own documentation's snippet
    return c


def test_python_snippets_are_valid_configuration() -> None:
    server, hub = (run_config(text) for text in blocks("python"))
    assert server.MappingKernelManager.cull_idle_timeout > 0 and server.MappingKernelManager.cull_connected is False
    environment = hub.Spawner.environment

    class Spawner:
        user = type("User", (), {"name": "ada"})()

    values = {key: value(Spawner()) if callable(value) else value for key, value in environment.items()}
    assert values["PERSISTENT_KERNEL_REPLICA"] == "s3://hub-sessions/ada"
    assert values["PERSISTENT_KERNEL_LOCAL_HOME"].endswith("/ada")
    assert "AWS_SECRET_ACCESS_KEY" in hub.Spawner.env_keep
    assert any("jupyterhub_idle_culler" in " ".join(s["command"]) for s in hub.JupyterHub.services)


def test_shell_snippets_parse_and_name_real_commands() -> None:
    from persistent_kernel.cli import build_parser

    for text in blocks("bash"):
        assert subprocess.run(["bash", "-n"], input=text, text=True).returncode == 0
        for line in text.splitlines():
            words = line.split("#")[0].split()
            if words[:1] == ["persistent-kernel"]:
                build_parser().parse_args(words[1:])  # exits (fails the test) on a command that does not exist


def test_the_dockerfile_installs_an_extra_that_exists() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    (text,) = blocks("dockerfile")
    assert re.search(r"^FROM \S+", text, flags=re.M)
    extras = tomllib.loads((DEPLOY.parent.parent / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    wanted = re.search(r"persistent-kernel\[(\w+)\]", text)
    assert wanted and "s3fs>=2023.1" in extras[wanted.group(1)]
