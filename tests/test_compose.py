"""Static checks of ``compose.yaml`` and ``Dockerfile`` against the real CLI.

No Docker engine is needed: the compose file is read with PyYAML and every
``LOGRELAY_*`` variable it sets is resolved by click exactly as ``logrelay``
would resolve it in the container.  ``docker compose config`` runs only where
a Docker engine answers.

Each check is a function returning a list of problems; the negative tests
feed it a broken copy to show that it would notice.
"""

from __future__ import annotations

import copy
import json
import logging
import logging.handlers
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import click
import pytest
import yaml
from click.core import ParameterSource

from relay.cli import ENVVAR_PREFIX, main
from relay.cli.consume import file_consumer_settings
from relay.cli.options import catcher_settings
from relay.common.addresses import ListenAddress
from tests.support.polling import wait_until

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"

Compose = dict[str, Any]
Service = dict[str, Any]

# Commands whose options, once parsed, also build a settings object that
# validates them together (URL scheme, buffer larger than a record, ...).
SETTINGS_BUILDERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "catch": catcher_settings,
    "consume file": file_consumer_settings,
}


# -- reading the files ---------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> Compose:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path.name} is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return DOCKERFILE.read_text(encoding="utf-8")


def services(compose: Compose) -> dict[str, Service]:
    found = compose.get("services")
    assert isinstance(found, dict), "compose.yaml has no services mapping"
    assert found, "compose.yaml has no services"
    return found


def service_env(service: Service) -> dict[str, str | None]:
    """``environment`` as compose reads it: a mapping or a list of ``KEY=VALUE``."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.partition("=") for item in env)
        return {key: (value if sep else None) for key, sep, value in pairs}
    # Compose turns numbers and booleans into strings; None means "from the host".
    return {key: (None if value is None else _compose_scalar(value)) for key, value in env.items()}


def _compose_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def service_command(service: Service) -> list[str] | None:
    command = service.get("command")
    if command is None:
        return None
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def logrelay_services(compose: Compose) -> dict[str, Service]:
    """The services running this project's image (built here, entrypoint untouched)."""
    return {
        name: service
        for name, service in services(compose).items()
        if "build" in service and "entrypoint" not in service
    }


def parse_duration(text: str | int | float) -> float:
    """Seconds in a compose duration: ``40s``, ``1m30s``, ``1.5s``, ``500ms``."""
    if isinstance(text, int | float):
        return float(text)
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a compose duration: {text!r}")
    return sum(float(number) * units[unit] for number, unit in parts)


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs, with comments dropped and continuations joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        instructions.append((keyword.upper(), args.strip()))
        pending = ""
    return instructions


def exec_form(args: str) -> list[str] | None:
    """The JSON array of an exec-form ``ENTRYPOINT``/``CMD``, or None for shell form."""
    try:
        value = json.loads(args)
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


# pip options that take a value, so that value is no install target.
_PIP_VALUE_OPTIONS = frozenset(
    {
        "-r",
        "--requirement",
        "-c",
        "--constraint",
        "-i",
        "--index-url",
        "--extra-index-url",
        "-f",
        "--find-links",
        "-t",
        "--target",
        "--prefix",
        "--root",
        "--python-version",
        "--platform",
        "--progress-bar",
    }
)


def pip_install_targets(run_args: str) -> list[str]:
    """What the ``pip install`` commands of one shell-form ``RUN`` install (``.`` for ``.[extra]``)."""
    targets: list[str] = []
    for segment in re.split(r"&&|\|\||;", run_args):
        words = shlex.split(segment)
        for start in range(len(words) - 1):
            if words[start].rsplit("/", 1)[-1] in ("pip", "pip3") and words[start + 1] == "install":
                break
        else:
            continue
        skip = False
        for word in words[start + 2 :]:
            if skip:
                skip = False
            elif word.startswith("-"):
                skip = word in _PIP_VALUE_OPTIONS
            else:
                targets.append("." if re.fullmatch(r"\./?(\[.*\])?", word) else word)
    return targets


# -- LOGRELAY_* variables against the click commands --------------------------


def option_envvar(command: str, param: click.Parameter) -> str:
    assert param.name is not None
    return f"{ENVVAR_PREFIX}_{command.upper()}_{param.name.upper()}"


@contextmanager
def logrelay_environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with only ``env`` as its ``LOGRELAY_*`` variables, restored afterwards."""
    with mock.patch.dict(os.environ):
        for key in [key for key in os.environ if key.startswith(f"{ENVVAR_PREFIX}_")]:
            del os.environ[key]
        os.environ.update(env)
        yield


def resolve_command(command_line: list[str]) -> tuple[list[str], click.Command | None, list[str]]:
    """Walk ``command_line`` through the CLI's groups: (path, command, remaining arguments)."""
    path: list[str] = []
    command: click.Command = main
    args = list(command_line)
    while isinstance(command, click.Group) and args:
        name = args.pop(0)
        sub = command.commands.get(name)
        if sub is None:
            return [*path, name], None, args
        path.append(name)
        command = sub
    return path, command, args


def command_env_problems(command_line: list[str] | None, env: Mapping[str, str | None]) -> list[str]:
    """What is wrong with running ``logrelay <command_line>`` under ``env``."""
    if not command_line:
        return ["no command: the image's default CMD would run, state the subcommand"]
    path, command, args = resolve_command(command_line)
    shown = " ".join(path)
    if command is None:
        return [f"command {shown!r} is not a logrelay subcommand (have: {sorted(main.commands)})"]
    if isinstance(command, click.Group):
        return [f"{shown!r} is a group of commands, not a command"]
    command_name = "_".join(path)

    params = {option_envvar(command_name, p): p for p in command.params if isinstance(p, click.Option)}
    command_name = shown
    problems: list[str] = []
    given: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith(f"{ENVVAR_PREFIX}_"):
            continue
        param = params.get(key)
        if param is None:
            problems.append(f"{key} matches no option of `logrelay {command_name}`")
        elif value is None:
            problems.append(f"{key} has no value (it would come from the host's environment)")
        else:
            given[key] = value
    if problems:
        return problems

    # Each value on its own, through the option's click type.
    parent = click.Context(main, info_name="logrelay", auto_envvar_prefix=ENVVAR_PREFIX)
    group: click.Command = main
    for name in path[:-1]:
        assert isinstance(group, click.Group)
        group = group.commands[name]
        parent = click.Context(group, info_name=name, parent=parent)
    for key, value in given.items():
        with click.Context(command, info_name=path[-1], parent=parent) as ctx:
            try:
                params[key].process_value(ctx, value)
            except click.BadParameter as exc:
                problems.append(f"{key}={value!r}: {exc.format_message()}")
    if problems:
        return problems

    # Then the whole command line as the container runs it: click must read
    # every variable from the environment, and the settings must build.
    with logrelay_environment(given):
        try:
            ctx = command.make_context(path[-1], args, parent=parent)
        except click.ClickException as exc:
            return [f"`logrelay {shlex.join(command_line)}`: {exc.format_message()}"]
    for key, param in params.items():
        assert param.name is not None
        if key in given and ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
            problems.append(f"click did not take --{param.name} from {key}")
    builder = SETTINGS_BUILDERS.get(command_name)
    if builder is not None and not problems:
        try:
            builder(ctx.params)
        except ValueError as exc:
            problems.append(f"settings for `logrelay {command_name}`: {exc}")
    return problems


def logrelay_problems(compose: Compose) -> list[str]:
    found = logrelay_services(compose)
    if not found:
        return ["no service builds the logrelay image"]
    return [
        f"{name}: {problem}"
        for name, service in found.items()
        for problem in command_env_problems(service_command(service), service_env(service))
    ]


# -- the deployment's shape ---------------------------------------------------


def fixed_host_ports(ports: list[Any]) -> list[str]:
    """The ``ports`` entries that bind a fixed host port (which a second replica cannot)."""
    fixed = []
    for entry in ports:
        if isinstance(entry, dict):
            if entry.get("published") not in (None, ""):
                fixed.append(str(entry))
            continue
        spec = str(entry).split("/")[0]  # drop /tcp, /udp
        if spec.startswith("["):  # [::1]:9020:9020
            spec = spec.rpartition("]:")[2]
        parts = spec.rsplit(":", 2)
        # "9020" or "127.0.0.1::9020" publish on an ephemeral host port.
        if len(parts) >= 2 and parts[-2] != "":
            fixed.append(str(entry))
    return fixed


def scalability_problems(name: str, service: Service) -> list[str]:
    problems = [
        f"{name} sets {key}: replicas would collide" for key in ("container_name", "hostname") if key in service
    ]
    problems += [f"{name} binds a fixed host port: {p}" for p in fixed_host_ports(service.get("ports", []))]
    return problems


def catcher_problems(compose: Compose) -> list[str]:
    all_services = services(compose)
    catcher = all_services.get("catcher")
    if catcher is None:
        return ["no catcher service"]
    problems = scalability_problems("catcher", catcher)
    env = service_env(catcher)

    listen = ListenAddress.parse(env.get("LOGRELAY_CATCH_LISTEN") or str(_default("listen")))
    if listen.is_loopback:
        problems.append(f"catcher listens on {listen}: loopback is unreachable from other containers")
    if str(listen.port) not in [str(port) for port in catcher.get("expose", [])]:
        problems.append(f"catcher listens on port {listen.port} but exposes {catcher.get('expose')}")

    redis_host = urlsplit(env.get("LOGRELAY_CATCH_REDIS_URL") or "").hostname
    if redis_host not in all_services:
        problems.append(f"LOGRELAY_CATCH_REDIS_URL points at {redis_host!r}, not a service of this file")
    elif (catcher.get("depends_on") or {}).get(redis_host, {}).get("condition") != "service_healthy":
        problems.append(f"catcher does not wait for {redis_host} to be healthy")
    elif "healthcheck" not in all_services[redis_host]:
        problems.append(f"{redis_host} has no healthcheck for depends_on to wait on")

    stopping = sum(
        float(env.get(f"LOGRELAY_CATCH_{name.upper()}") or _default(name))
        for name in ("shutdown_grace", "drain_timeout", "shutdown_timeout")
    )
    grace = parse_duration(catcher.get("stop_grace_period", "10s"))
    if grace <= stopping:
        problems.append(f"stop_grace_period {grace:g}s is not longer than grace + drain + shutdown ({stopping:g}s)")

    if catcher.get("restart") != "unless-stopped":
        problems.append(f"catcher restart policy is {catcher.get('restart')!r}")
    return problems


def _default(option: str) -> Any:
    (param,) = [p for p in main.commands["catch"].params if p.name == option]
    return param.default


def volume_mounts(service: Service) -> list[tuple[str, str]]:
    """``(source, target)`` of each of a service's volumes, short or long syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts.append((str(volume.get("source", "")), str(volume.get("target", ""))))
        else:
            source, _, rest = str(volume).partition(":")
            mounts.append((source, rest.partition(":")[0].rstrip("/")))
    return mounts


def balancer_problems(compose: Compose, config_text: str) -> list[str]:
    """HAProxy: the shipped config mounted, the catchers behind it with health checks and PROXY v2."""
    all_services = services(compose)
    haproxy, catcher = all_services.get("haproxy"), all_services.get("catcher")
    if haproxy is None or catcher is None:
        return ["no haproxy (or no catcher) service"]
    problems = []
    if ("./deploy/haproxy.cfg", "/usr/local/etc/haproxy/haproxy.cfg") not in volume_mounts(haproxy):
        problems.append("haproxy does not mount ./deploy/haproxy.cfg as its configuration")
    env = service_env(catcher)
    listen = ListenAddress.parse(env.get("LOGRELAY_CATCH_LISTEN") or str(_default("listen")))
    health = env.get("LOGRELAY_CATCH_HEALTH_LISTEN")
    if not health:
        problems.append("catchers have no health endpoint for HAProxy's checks")
    elif f"check port {ListenAddress.parse(health).port}" not in config_text:
        problems.append(f"HAProxy does not check the catchers' health port ({health})")
    if f"catcher:{listen.port}" not in config_text:
        problems.append(f"HAProxy's servers are not catcher:{listen.port}")
    if (env.get("LOGRELAY_CATCH_PROXY_PROTOCOL") == "true") != ("send-proxy-v2" in config_text):
        problems.append("catchers and HAProxy disagree on the PROXY protocol")
    for needed in ("mode tcp", "balance leastconn", "option httpchk GET /readyz", "server-template"):
        if needed not in config_text:
            problems.append(f"haproxy.cfg lacks {needed!r}")
    bind = service_env(haproxy).get("LOGRELAY_LB_BIND") or ""
    published = [str(port).split(":")[-1] for port in haproxy.get("ports", [])]
    if bind.rpartition(":")[2] not in published:
        problems.append(f"haproxy binds {bind!r} but publishes {haproxy.get('ports')}")
    return problems


def consumer_problems(compose: Compose) -> list[str]:
    all_services = services(compose)
    consumer = all_services.get("consumer")
    if consumer is None:
        return ["no consumer service"]
    problems = []
    if service_command(consumer) != ["consume", "file"]:
        problems.append(f"consumer runs {service_command(consumer)}")
    output = service_env(consumer).get("LOGRELAY_CONSUME_FILE_OUTPUT") or ""
    volumes = compose.get("volumes") or {}
    if not any(output.startswith(target + "/") and source in volumes for source, target in volume_mounts(consumer)):
        problems.append(f"the central file {output!r} is not on a named volume")
    redis_host = urlsplit(service_env(consumer).get("LOGRELAY_CONSUME_FILE_REDIS_URL") or "").hostname
    if (consumer.get("depends_on") or {}).get(redis_host, {}).get("condition") != "service_healthy":
        problems.append(f"consumer does not wait for {redis_host} to be healthy")
    health = service_env(consumer).get("LOGRELAY_CONSUME_FILE_HEALTH_LISTEN")
    if not health:
        problems.append("the consumer has no health endpoint")
    elif f":{ListenAddress.parse(health).port}/livez" not in " ".join(
        (consumer.get("healthcheck") or {}).get("test") or []
    ):
        problems.append(f"the consumer's healthcheck does not ask its endpoint ({health}) for /livez")
    return problems


def redis_problems(compose: Compose) -> list[str]:
    redis = services(compose).get("redis")
    if redis is None:
        return ["no redis service"]
    problems = []
    command = service_command(redis) or []
    args = dict(zip(command[1::2], command[2::2], strict=False)) if command[:1] == ["redis-server"] else {}
    if args.get("--appendonly") != "yes":
        problems.append(f"redis runs without --appendonly yes: {command}")
    data_volumes = [source for source, target in volume_mounts(redis) if target == "/data"]
    if not data_volumes:
        problems.append("redis keeps /data in the container: it is lost with the container")
    for volume in data_volumes:
        if volume not in (compose.get("volumes") or {}):
            problems.append(f"redis /data volume {volume!r} is not a named volume of this file")
    return problems


def dockerfile_problems(text: str) -> list[str]:
    instructions = dockerfile_instructions(text)
    problems = []

    def last(keyword: str) -> str | None:
        found = [args for kw, args in instructions if kw == keyword]
        return found[-1] if found else None

    base = last("FROM") or ""
    if not base.startswith("python:3.11-slim"):
        problems.append(f"base image is {base!r}, not python:3.11-slim")

    entrypoint = exec_form(last("ENTRYPOINT") or "")
    if entrypoint != ["logrelay"]:
        problems.append(f'ENTRYPOINT is {last("ENTRYPOINT")!r}, not exec-form ["logrelay"]')
    cmd = exec_form(last("CMD") or "")
    if not cmd or cmd[0] not in main.commands:
        problems.append(f"CMD {last('CMD')!r} does not name a logrelay subcommand")

    exposed = " ".join(args for kw, args in instructions if kw == "EXPOSE").split()
    if "9020" not in [port.split("/")[0] for port in exposed]:
        problems.append(f"EXPOSE does not include 9020: {exposed}")

    # The project is installed from its own source: `pip install .`.
    project_install = [
        i for i, (kw, args) in enumerate(instructions) if kw == "RUN" and "." in pip_install_targets(args)
    ]
    if not project_install:
        problems.append("no RUN pip install . installs the project")
    copied = " ".join(args for kw, args in instructions if kw in ("COPY", "ADD")).split()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    # setup.py builds the C extensions: without it the image runs the slower Python paths.
    needed = ["pyproject.toml", "setup.py", *(pattern.rstrip("*").rstrip(".") for pattern in packages)]
    for path in needed:
        if not any(src == path or src.startswith((f"{path}/", f"./{path}")) for src in copied):
            problems.append(f"{path} is not copied into the image")

    users = [(i, args) for i, (kw, args) in enumerate(instructions) if kw == "USER"]
    if not users or users[-1][1].split(":")[0] in ("root", "0"):
        problems.append("the image runs as root: add a USER")
    elif project_install and users[-1][0] < project_install[-1]:
        problems.append("USER comes before pip install: the install would run unprivileged")
    return problems


# -- the tests -------------------------------------------------------------------


def test_compose_parses(compose: Compose) -> None:
    assert set(services(compose)) >= {"redis", "catcher", "haproxy", "consumer"}


def test_logrelay_commands_and_environment_match_the_cli(compose: Compose) -> None:
    assert logrelay_problems(compose) == []


def test_catcher_is_scalable_and_reaches_redis(compose: Compose) -> None:
    catcher = services(compose)["catcher"]
    assert catcher["build"] == "."
    assert catcher["deploy"]["replicas"] > 1
    assert catcher_problems(compose) == []


def test_haproxy_fronts_the_catchers_with_the_shipped_config(compose: Compose) -> None:
    assert balancer_problems(compose, HAPROXY_CONFIG.read_text()) == []


def test_the_consumer_writes_the_central_file_to_a_volume(compose: Compose) -> None:
    assert consumer_problems(compose) == []


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("send-proxy-v2 ", "", "disagree on the PROXY protocol"),
        ("check port 9021", "check port 9999", "health port"),
        ("balance leastconn", "balance roundrobin", "balance leastconn"),
        ("catcher:9020", "catcher:9030", "servers are not catcher:9020"),
    ],
)
def test_balancer_checks_catch_a_broken_haproxy_config(compose: Compose, old: str, new: str, expected: str) -> None:
    text = HAPROXY_CONFIG.read_text()
    assert old in text
    problems = balancer_problems(compose, text.replace(old, new))
    assert any(expected in problem for problem in problems), problems


def test_redis_persists(compose: Compose) -> None:
    assert redis_problems(compose) == []


def test_dockerfile(dockerfile: str) -> None:
    assert dockerfile_problems(dockerfile) == []


def _set_env(name: str, value: str | None) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        compose["services"]["catcher"]["environment"][name] = value

    return mutate


def _set(service: str, key: str, value: Any) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        compose["services"][service][key] = value

    return mutate


@pytest.mark.parametrize(
    ("mutate", "check", "expected"),
    [
        pytest.param(
            _set_env("LOGRELAY_CATCH_REDIS_ULR", "redis://redis:6379/0"),
            logrelay_problems,
            "LOGRELAY_CATCH_REDIS_ULR matches no option",
            id="misspelled-option",
        ),
        pytest.param(
            _set_env("LOGRELAY_CACTH_STREAM", "logrelay"),
            logrelay_problems,
            "LOGRELAY_CACTH_STREAM matches no option",
            id="misspelled-command-prefix",
        ),
        pytest.param(
            _set("catcher", "command", ["cach"]),
            logrelay_problems,
            "not a logrelay subcommand",
            id="unknown-subcommand",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_LISTEN", "0.0.0.0"),
            logrelay_problems,
            "expected HOST:PORT",
            id="bad-listen",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_MAX_DEPTH", "0"),
            logrelay_problems,
            "LOGRELAY_CATCH_MAX_DEPTH",
            id="out-of-range",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_BUFFER_BYTES", "lots"),
            logrelay_problems,
            "not a byte size",
            id="bad-size",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_REDIS_URL", "http://redis:6379"),
            logrelay_problems,
            "unsupported Redis URL scheme",
            id="settings-reject",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_STREAM", None),
            logrelay_problems,
            "has no value",
            id="passthrough-variable",
        ),
        pytest.param(
            _set("catcher", "container_name", "catcher"),
            catcher_problems,
            "container_name",
            id="container-name",
        ),
        pytest.param(_set("catcher", "ports", ["9020:9020"]), catcher_problems, "fixed host port", id="fixed-port"),
        pytest.param(_set_env("LOGRELAY_CATCH_LISTEN", "127.0.0.1:9020"), catcher_problems, "loopback", id="loopback"),
        pytest.param(
            _set_env("LOGRELAY_CATCH_LISTEN", "0.0.0.0:9030"),
            catcher_problems,
            "exposes",
            id="port-not-exposed",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_REDIS_URL", "redis://cache:6379/0"),
            catcher_problems,
            "not a service",
            id="redis-host-unknown",
        ),
        pytest.param(
            _set("catcher", "stop_grace_period", "35s"),
            catcher_problems,
            "stop_grace_period",
            id="grace-too-short",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_SHUTDOWN_TIMEOUT", "60"),
            catcher_problems,
            "stop_grace_period",
            id="grace-shorter-than-raised-timeout",
        ),
        pytest.param(
            _set("redis", "command", ["redis-server", "--appendonly", "no"]),
            redis_problems,
            "--appendonly yes",
            id="no-aof",
        ),
        pytest.param(_set("redis", "volumes", []), redis_problems, "/data", id="no-data-volume"),
        pytest.param(
            _set("redis", "volumes", [{"type": "volume", "source": "other", "target": "/data"}]),
            redis_problems,
            "not a named volume",
            id="undeclared-volume",
        ),
    ],
)
def test_checks_catch_a_broken_compose_file(
    compose: Compose,
    mutate: Callable[[Compose], None],
    check: Callable[[Compose], list[str]],
    expected: str,
) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = check(broken)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("entry", "fixed"),
    [
        ("9020", False),
        ("127.0.0.1::9020", False),
        ({"target": 9020}, False),
        ("9020:9020", True),
        ("127.0.0.1:9020:9020/tcp", True),
        ("[::1]:9020:9020", True),
        ({"target": 9020, "published": "9020"}, True),
    ],
)
def test_fixed_host_ports(entry: Any, fixed: bool) -> None:
    assert bool(fixed_host_ports([entry])) is fixed


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('ENTRYPOINT ["logrelay"]', "ENTRYPOINT logrelay", "ENTRYPOINT"),
        ('ENTRYPOINT ["logrelay"]', 'ENTRYPOINT ["python", "-m", "relay"]', "ENTRYPOINT"),
        ('CMD ["catch"]', 'CMD ["cach"]', "CMD"),
        ("&& pip install . ", "&& pip install logrelay ", "pip install ."),
        ("setup.py ", "", "setup.py is not copied"),
        ("USER logrelay:logrelay", "USER root", "root"),
        ("COPY consumers ./consumers", "", "consumers is not copied"),
        ("EXPOSE 9020", "EXPOSE 9021", "EXPOSE"),
    ],
)
def test_dockerfile_checks_catch_a_broken_dockerfile(dockerfile: str, old: str, new: str, expected: str) -> None:
    assert old in dockerfile
    problems = dockerfile_problems(dockerfile.replace(old, new))
    assert any(expected in problem for problem in problems), problems


def test_parse_duration() -> None:
    assert parse_duration("40s") == 40
    assert parse_duration("1m30s") == 90
    assert parse_duration("500ms") == 0.5
    with pytest.raises(ValueError, match="not a compose duration"):
        parse_duration("40")


def _docker_engine_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return False
    return info.returncode == 0


def test_docker_compose_config() -> None:
    if not _docker_engine_answers():
        pytest.skip("no Docker engine on this machine: compose.yaml validated statically only")
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: compose.yaml validated statically only")
    result = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
def test_docker_compose_up_end_to_end() -> None:
    """The real deployment, where a Docker engine runs: records from a SocketHandler reach the volume's file."""
    if not _docker_engine_answers():
        pytest.skip("no Docker engine on this machine: the same topology runs as processes in test_fleet.py")
    compose_cmd = ["docker", "compose", "-p", "logrelay-e2e", "-f", str(COMPOSE_FILE)]
    up = subprocess.run([*compose_cmd, "up", "-d", "--build", "--wait"], cwd=ROOT, capture_output=True, timeout=900)
    try:
        assert up.returncode == 0, up.stderr.decode(errors="replace")
        handler = logging.handlers.SocketHandler("127.0.0.1", 9020)
        logger = logging.getLogger("compose.e2e")
        logger.addHandler(handler)
        logger.propagate = False
        for seq in range(100):
            logger.warning("compose record %d", seq)
        handler.close()

        def lines() -> list[str]:
            result = subprocess.run(
                [*compose_cmd, "exec", "-T", "consumer", "cat", "/var/log/logrelay/central.log"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            return [line for line in result.stdout.splitlines() if "compose record" in line]

        found = wait_until(lambda: len(lines()) >= 100 and lines(), timeout=120, what="records in the volume")
        assert sorted(int(line.rsplit(" ", 1)[1]) for line in found) == list(range(100))
    finally:
        subprocess.run([*compose_cmd, "down", "-v"], cwd=ROOT, capture_output=True, timeout=300, check=False)
