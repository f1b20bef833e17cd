"""Static checks of ``compose.yaml`` (alone, and with ``compose.sentinel.yaml`` over it) against the real CLI
(``Dockerfile``: tests/test_dockerfile.py).

No Docker engine is needed: the compose files are read with PyYAML (and merged
as compose merges them: tests/support/compose.py) and every ``LOGRELAY_*``
variable they set is resolved by click exactly as ``logrelay`` would resolve
it in the container.  ``docker compose config`` runs only where a Docker
engine answers.

Each check is a function returning a list of problems; the negative tests
feed it a broken copy to show that it would notice.  Every check of the fleet
runs on both deployments (the ``compose`` fixture); the Sentinel variant has
checks of its own (:func:`sentinel_problems`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import logging.handlers
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from unittest import mock
from urllib.parse import urlsplit

import click
import pytest
from click.core import ParameterSource

from relay.cli import ENVVAR_PREFIX, main
from relay.cli.consume import file_consumer_settings
from relay.cli.options import catcher_settings
from relay.common.addresses import ListenAddress
from relay.common.redis_client import RedisSettings
from tests.support.compose import (
    COMPOSE_FILE,
    ROOT,
    SENTINEL_COMPOSE_FILE,
    Compose,
    Service,
    load_compose,
    merge_compose,
    option_arguments,
    option_envvar,
    resolve_command,
    service_command,
    service_env,
    services,
)
from tests.support.polling import wait_until

HAPROXY_CONFIG = ROOT / "deploy" / "haproxy.cfg"
#: The deployments: the files of each, in ``docker compose -f`` order.
DEPLOYMENTS = {
    "fleet": (COMPOSE_FILE,),
    "sentinel": (COMPOSE_FILE, SENTINEL_COMPOSE_FILE),
}

# Commands whose options, once parsed, also build a settings object that
# validates them together (URL scheme, buffer larger than a record, ...).
SETTINGS_BUILDERS: dict[str, Callable[[dict[str, Any]], object]] = {
    "catch": catcher_settings,
    "consume file": file_consumer_settings,
}


# -- reading the files ---------------------------------------------------------


@pytest.fixture(scope="module", params=list(DEPLOYMENTS))
def compose(request: pytest.FixtureRequest) -> Compose:
    """Each deployment's compose model: every check of the fleet holds for the Sentinel variant too."""
    return load_compose(*DEPLOYMENTS[request.param])


@pytest.fixture(scope="module")
def sentinel_compose() -> Compose:
    return load_compose(*DEPLOYMENTS["sentinel"])


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


# -- LOGRELAY_* variables against the click commands --------------------------


@contextmanager
def logrelay_environment(env: Mapping[str, str]) -> Iterator[None]:
    """``os.environ`` with only ``env`` as its ``LOGRELAY_*`` variables, restored afterwards."""
    with mock.patch.dict(os.environ):
        for key in [key for key in os.environ if key.startswith(f"{ENVVAR_PREFIX}_")]:
            del os.environ[key]
        os.environ.update(env)
        yield


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
        except click.ClickException as exc:  # a configuration error (a --redis-url naming no Redis)
            problems.append(f"settings for `logrelay {command_name}`: {exc.format_message()}")
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

    problems += redis_url_problems(compose, "catcher")

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


def service_option(service: Service, option: str) -> str | None:
    """What a logrelay service's environment sets ``option`` (``redis_url``) of its command to, if anything."""
    path, _, _ = resolve_command(service_command(service) or [])
    return service_env(service).get(f"{ENVVAR_PREFIX}_{'_'.join(path).upper()}_{option.upper()}")


def redis_hosts(url: str) -> list[str]:
    """The hosts a Redis URL names: its one server, or each Sentinel or Cluster startup node (``ValueError``
    from :meth:`RedisSettings.from_url` if it is no Redis URL logrelay takes)."""
    target = RedisSettings.from_url(url).target
    if target.kind == "direct":
        return [urlsplit(url).hostname or ""]
    return [host for host, _ in target.nodes]


def redis_url_problems(compose: Compose, name: str) -> list[str]:
    """Service ``name``'s ``--redis-url`` parses, each host it names is a service of this file with a
    healthcheck, and ``name`` waits for each to be healthy before it starts."""
    all_services = services(compose)
    service = all_services[name]
    url = service_option(service, "redis_url") or ""
    try:
        hosts = redis_hosts(url)
    except ValueError as exc:
        return [f"{name}'s Redis URL does not parse: {exc}"]
    problems = []
    for host in hosts:
        if host not in all_services:
            problems.append(f"{name}'s Redis URL points at {host!r}, not a service of this file")
        elif (service.get("depends_on") or {}).get(host, {}).get("condition") != "service_healthy":
            problems.append(f"{name} does not wait for {host} to be healthy")
        elif "healthcheck" not in all_services[host]:
            problems.append(f"{host} has no healthcheck for depends_on to wait on")
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
    published = [str(port).split(":")[-1] for port in haproxy.get("ports", [])]
    lb_env = service_env(haproxy)
    for variable in ("LOGRELAY_LB_BIND", "LOGRELAY_LB_SYSLOG_BIND", "LOGRELAY_LB_HTTP_BIND"):
        bind = lb_env.get(variable) or ""
        if f"${{{variable}}}" in config_text and bind.rpartition(":")[2] not in published:
            problems.append(f"haproxy binds {bind!r} ({variable}) but publishes {haproxy.get('ports')}")
    # Syslog over TCP and HTTP: HAProxy's servers are the catchers' ports for them.
    for option in ("listen_syslog", "listen_http"):
        value = env.get(f"LOGRELAY_CATCH_{option.upper()}")
        if value and f"catcher:{ListenAddress.parse(value).port} " not in config_text:
            problems.append(f"HAProxy has no servers on the catchers' --{option.replace('_', '-')} port ({value})")
    return problems


def udp_problems(compose: Compose) -> list[str]:
    """The UDP inputs: published as UDP on the host by the service that listens on them."""
    problems = []
    for name, service in logrelay_services(compose).items():
        env = service_env(service)
        published = {str(port) for port in service.get("ports", [])}
        for option in ("listen_syslog", "listen_datagram"):
            value = env.get(f"LOGRELAY_CATCH_{option.upper()}")
            if not value or name == "catcher":  # the replicas' syslog is TCP behind HAProxy
                continue
            port = ListenAddress.parse(value).port
            if f"{port}:{port}/udp" not in published:
                problems.append(
                    f"{name} listens for UDP on {value} (--{option.replace('_', '-')}) but does not publish {port}/udp"
                )
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
    problems += redis_url_problems(compose, "consumer")
    health = service_env(consumer).get("LOGRELAY_CONSUME_FILE_HEALTH_LISTEN")
    if not health:
        problems.append("the consumer has no health endpoint")
    elif f":{ListenAddress.parse(health).port}/livez" not in " ".join(
        (consumer.get("healthcheck") or {}).get("test") or []
    ):
        problems.append(f"the consumer's healthcheck does not ask its endpoint ({health}) for /livez")
    return problems


def redis_server_args(service: Service) -> dict[str, list[str]]:
    """The ``--name value...`` options of a ``redis-server`` command line ({} for another command)."""
    command = service_command(service) or []
    if command[:1] != ["redis-server"]:
        return {}
    args: dict[str, list[str]] = {}
    values: list[str] = []
    for word in command[1:]:
        if word.startswith("--"):
            values = args.setdefault(word, [])
        else:
            values.append(word)
    return args


def redis_problems(compose: Compose, name: str = "redis") -> list[str]:
    """Redis node ``name`` keeps every write in its AOF, on a named volume."""
    node = services(compose).get(name)
    if node is None:
        return [f"no {name} service"]
    problems = []
    if redis_server_args(node).get("--appendonly") != ["yes"]:
        problems.append(f"{name} runs without --appendonly yes: {service_command(node)}")
    data_volumes = [source for source, target in volume_mounts(node) if target == "/data"]
    if not data_volumes:
        problems.append(f"{name} keeps /data in the container: it is lost with the container")
    for volume in data_volumes:
        if volume not in (compose.get("volumes") or {}):
            problems.append(f"{name} /data volume {volume!r} is not a named volume of this file")
    return problems


# -- Sentinel (compose.sentinel.yaml) -------------------------------------------

SENTINEL_PORT_LINE = re.compile(r"^port (\d+)$", re.MULTILINE)
SENTINEL_MONITOR_LINE = re.compile(r"^sentinel monitor (\S+) (\S+) (\d+) (\d+)$", re.MULTILINE)


def sentinel_config(service: Service) -> str | None:
    """The Sentinel config a service's command writes (its text, as lines), None if it runs no Sentinel."""
    text = "\n".join(line.strip() for line in "\n".join(service_command(service) or []).splitlines())
    return text if "--sentinel" in text and SENTINEL_MONITOR_LINE.search(text) else None


def sentinel_problems(compose: Compose) -> list[str]:
    """For each logrelay service reaching Redis through Sentinels: they are services of this file, all
    monitor the URL's service at one address with a quorum they can reach, a replica follows that master
    (enough of them for ``--wait-replicas``), and every address Sentinel hands out is a service name."""
    all_services = services(compose)
    configs = {name: text for name, service in all_services.items() if (text := sentinel_config(service))}
    problems: list[str] = []
    kinds = {}
    for name, service in logrelay_services(compose).items():
        with contextlib.suppress(ValueError):
            kinds[name] = RedisSettings.from_url(service_option(service, "redis_url") or "").target.kind
    if "sentinel" in kinds.values():
        # One service left on the master's own address writes to a replica after a failover.
        problems += [
            f"{name} reaches Redis without the Sentinels" for name, kind in kinds.items() if kind != "sentinel"
        ]
    for name, service in logrelay_services(compose).items():
        try:
            target = RedisSettings.from_url(service_option(service, "redis_url") or "").target
        except ValueError:
            continue  # redis_url_problems says so
        if target.kind != "sentinel":
            continue
        monitors = set()
        for host, port in target.nodes:
            config = configs.get(host)
            if config is None:
                problems.append(f"{name}'s Redis URL names {host!r}, not a Sentinel of this file")
                continue
            ports = SENTINEL_PORT_LINE.findall(config) or ["26379"]
            if ports != [str(port)]:
                problems.append(f"{name}'s Redis URL says {host}:{port}, but {host} listens on {ports}")
            found = [m for m in SENTINEL_MONITOR_LINE.findall(config) if m[0] == target.service]
            if not found:
                problems.append(f"{host} does not monitor {target.service!r}, the service {name}'s Redis URL names")
            monitors.update((master, int(p), int(quorum)) for _, master, p, quorum in found)
            for setting in ("sentinel resolve-hostnames yes", "sentinel announce-hostnames yes"):
                if setting not in config.splitlines():
                    problems.append(f"{host} lacks {setting!r}: it would hand out container addresses")
            health = " ".join((all_services[host].get("healthcheck") or {}).get("test") or [])
            if f"-p {port} ping" not in health:
                problems.append(f"{host}'s healthcheck does not ping port {port}")
        if len(monitors) != 1:
            problems.append(f"the Sentinels of {name} do not agree on one master of {target.service!r}: {monitors}")
            continue
        ((master, master_port, quorum),) = monitors
        watching = [host for host, config in configs.items() if f"sentinel monitor {target.service} " in config]
        if not 1 <= quorum <= len(watching):
            problems.append(f"sentinel monitor quorum {quorum}, but {len(watching)} Sentinels watch {master}")
        if master not in all_services:
            problems.append(f"the Sentinels monitor {master!r}, not a service of this file")
            continue
        replicas = [
            replica
            for replica, node in all_services.items()
            if redis_server_args(node).get("--replicaof") == [master, str(master_port)]
        ]
        if not replicas:
            problems.append(f"no service replicates {master}:{master_port}, the master the Sentinels monitor")
        wait_replicas = int(service_option(service, "wait_replicas") or 0)
        if wait_replicas > len(replicas):
            problems.append(f"{name} waits for {wait_replicas} replicas, but {replicas} replicate {master}")
        for node in (master, *replicas):
            problems += redis_problems(compose, node)
            if redis_server_args(all_services[node]).get("--replica-announce-ip") != [node]:
                problems.append(f"{node} does not announce itself by its service name (--replica-announce-ip {node})")
    return sorted(set(problems))


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


def assert_check_notices(
    compose: Compose, mutate: Callable[[Compose], None], check: Callable[[Compose], list[str]], expected: str
) -> None:
    """``check`` finds a problem saying ``expected`` in a copy of ``compose`` that ``mutate`` broke."""
    broken = copy.deepcopy(compose)
    mutate(broken)
    problems = check(broken)
    assert any(expected in problem for problem in problems), problems


def _set_env(name: str, value: str | None) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        compose["services"]["catcher"]["environment"][name] = value

    return mutate


def _set(service: str, key: str, value: Any) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        compose["services"][service][key] = value

    return mutate


def test_the_udp_inputs_are_published_by_one_catcher(compose: Compose) -> None:
    assert udp_problems(compose) == []
    catcher = services(compose)["catcher-udp"]
    assert "deploy" not in catcher  # one replica: fixed host ports
    assert service_option(catcher, "listen_datagram") == "0.0.0.0:9030"


@pytest.mark.parametrize(
    ("mutate", "check", "expected"),
    [
        pytest.param(
            _set("catcher-udp", "ports", ["5514:5514/udp"]),
            udp_problems,
            "does not publish 9030/udp",
            id="datagram-not-published",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_LISTEN_SYSLOG", "0.0.0.0:6514"),
            lambda compose: balancer_problems(compose, HAPROXY_CONFIG.read_text()),
            "no servers on the catchers' --listen-syslog port",
            id="syslog-port-moved",
        ),
        pytest.param(
            lambda compose: compose["services"]["haproxy"]["environment"].update(LOGRELAY_LB_HTTP_BIND=":8081"),
            lambda compose: balancer_problems(compose, HAPROXY_CONFIG.read_text()),
            "(LOGRELAY_LB_HTTP_BIND) but publishes",
            id="http-bind-not-published",
        ),
    ],
)
def test_input_checks_catch_a_broken_compose(
    compose: Compose, mutate: Callable[[Compose], None], check: Callable[[Compose], list[str]], expected: str
) -> None:
    assert_check_notices(compose, mutate, check, expected)


def test_the_sentinel_variant_fails_over_to_a_replica_by_names(sentinel_compose: Compose) -> None:
    catcher = services(sentinel_compose)["catcher"]
    assert RedisSettings.from_url(service_option(catcher, "redis_url") or "").target.kind == "sentinel"
    assert service_option(catcher, "wait_replicas") == "1"
    assert sentinel_problems(sentinel_compose) == []


def test_the_fleet_has_no_sentinel_to_check() -> None:
    assert sentinel_problems(load_compose()) == []


def test_merge_compose_as_compose_does() -> None:
    base = {
        "services": {
            "a": {"image": "x", "command": ["one", "two"], "environment": ["A=1", "B=2"], "depends_on": {"r": {}}},
        },
        "volumes": {"v": None},
    }
    override = {
        "services": {
            "a": {"command": ["three"], "environment": {"B": 3, "C": True}, "depends_on": {"s": {}}},
            "b": {"image": "y"},
        },
        "volumes": {"w": None},
    }
    assert merge_compose(base, override) == {
        "services": {
            "a": {
                "image": "x",
                "command": ["three"],
                "environment": {"A": "1", "B": "3", "C": "true"},
                "depends_on": {"r": {}, "s": {}},
            },
            "b": {"image": "y"},
        },
        "volumes": {"v": None, "w": None},
    }
    assert base["services"]["a"]["command"] == ["one", "two"]  # untouched
    with pytest.raises(ValueError, match="'ports' is not implemented"):
        merge_compose({"services": {"a": {"ports": ["1:1"]}}}, {"services": {"a": {"ports": ["2:2"]}}})


def test_option_arguments_are_the_options_the_environment_sets() -> None:
    env = {"LOGRELAY_CATCH_WAIT_REPLICAS": "1", "LOGRELAY_CATCH_PROXY_PROTOCOL": "true", "PATH": "/bin"}
    assert option_arguments(["catch"], env) == ["--wait-replicas", "1", "--proxy-protocol"]
    assert option_arguments(["consume", "file"], {"LOGRELAY_CONSUME_FILE_FSYNC": "batch"}) == ["--fsync", "batch"]
    with pytest.raises(ValueError, match="LOGRELAY_CATCH_WAIT_REPLICA="):
        option_arguments(["catch"], {"LOGRELAY_CATCH_WAIT_REPLICA": "1"})


def _edit_sentinels(old: str, new: str) -> Callable[[Compose], None]:
    """Replace ``old`` by ``new`` in every Sentinel's command (new lists: the anchor shares the original)."""

    def mutate(compose: Compose) -> None:
        for service in services(compose).values():
            command = service_command(service) or []
            if sentinel_config(service) is not None:
                assert any(old in part for part in command), old
                service["command"] = [part.replace(old, new) for part in command]

    return mutate


def _drop_dependency(service: str, dependency: str) -> Callable[[Compose], None]:
    def mutate(compose: Compose) -> None:
        compose["services"][service]["depends_on"] = {
            name: condition
            for name, condition in compose["services"][service]["depends_on"].items()
            if name != dependency
        }

    return mutate


def _sentinel_url(url: str) -> Callable[[Compose], None]:
    return _set_env("LOGRELAY_CATCH_REDIS_URL", url)


@pytest.mark.parametrize(
    ("mutate", "check", "expected"),
    [
        pytest.param(
            _edit_sentinels("logrelay redis 6379 2", "logrelay redis 6379 4"),
            sentinel_problems,
            "quorum 4, but 3 Sentinels",
            id="quorum-above-sentinels",
        ),
        pytest.param(
            _set_env("LOGRELAY_CATCH_WAIT_REPLICAS", "2"),
            sentinel_problems,
            "waits for 2 replicas",
            id="more-wait-replicas-than-replicas",
        ),
        pytest.param(
            _set("redis-replica", "command", ["redis-server", "--appendonly", "yes", "--replicaof", "cache", "6379"]),
            sentinel_problems,
            "no service replicates redis:6379",
            id="replica-of-another-master",
        ),
        pytest.param(
            _set("redis-replica", "command", ["redis-server", "--replicaof", "redis", "6379"]),
            sentinel_problems,
            "redis-replica runs without --appendonly yes",
            id="replica-without-aof",
        ),
        pytest.param(
            _set("redis", "command", ["redis-server", "--appendonly", "yes"]),
            sentinel_problems,
            "redis does not announce itself by its service name",
            id="master-announces-its-address",
        ),
        pytest.param(
            _edit_sentinels("sentinel announce-hostnames yes", ""),
            sentinel_problems,
            "lacks 'sentinel announce-hostnames yes'",
            id="sentinels-hand-out-addresses",
        ),
        pytest.param(
            _edit_sentinels("logrelay redis 6379", "logrelay redis-replica 6379"),
            sentinel_problems,
            "no service replicates redis-replica:6379",
            id="sentinels-monitor-the-replica",
        ),
        pytest.param(
            _sentinel_url("redis+sentinel://sentinel-1:26379,sentinel-2:26379,sentinel-4:26379/logrelay/0"),
            catcher_problems,
            "'sentinel-4', not a service",
            id="unknown-sentinel-host",
        ),
        pytest.param(
            _sentinel_url("redis+sentinel://sentinel-1:26379,redis:26379/logrelay/0"),
            sentinel_problems,
            "names 'redis', not a Sentinel",
            id="data-node-as-sentinel",
        ),
        pytest.param(
            _sentinel_url("redis+sentinel://sentinel-1:26380/logrelay/0"),
            sentinel_problems,
            "sentinel-1 listens on ['26379']",
            id="wrong-sentinel-port",
        ),
        pytest.param(
            _sentinel_url("redis+sentinel://sentinel-1:26379,sentinel-2:26379/logs/0"),
            sentinel_problems,
            "does not monitor 'logs'",
            id="unmonitored-service",
        ),
        pytest.param(
            _sentinel_url("redis+sentinel://sentinel-1:26379,sentinel-2:26379"),
            catcher_problems,
            "Redis URL does not parse: no Sentinel service name",
            id="url-without-service",
        ),
        pytest.param(
            _drop_dependency("consumer", "sentinel-3"),
            consumer_problems,
            "consumer does not wait for sentinel-3 to be healthy",
            id="consumer-starts-before-a-sentinel",
        ),
        pytest.param(
            _set("sentinel-2", "healthcheck", {"test": ["CMD", "redis-cli", "ping"]}),
            sentinel_problems,
            "sentinel-2's healthcheck does not ping port 26379",
            id="sentinel-health-on-6379",
        ),
        pytest.param(
            lambda compose: compose["services"]["catcher-udp"]["environment"].update(
                LOGRELAY_CATCH_REDIS_URL="redis://redis:6379/0"
            ),
            sentinel_problems,
            "catcher-udp reaches Redis without the Sentinels",
            id="one-service-on-the-master",
        ),
    ],
)
def test_sentinel_checks_catch_a_broken_variant(
    sentinel_compose: Compose,
    mutate: Callable[[Compose], None],
    check: Callable[[Compose], list[str]],
    expected: str,
) -> None:
    assert_check_notices(sentinel_compose, mutate, check, expected)


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
    assert_check_notices(compose, mutate, check, expected)


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


@pytest.mark.parametrize("deployment", list(DEPLOYMENTS))
def test_docker_compose_config(deployment: str) -> None:
    if not _docker_engine_answers():
        pytest.skip("no Docker engine on this machine: the compose files validated statically only")
    version = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30, check=False)
    if version.returncode != 0:
        pytest.skip("the docker compose plugin is not installed: the compose files validated statically only")
    files = [arg for path in DEPLOYMENTS[deployment] for arg in ("-f", str(path))]
    result = subprocess.run(
        ["docker", "compose", *files, "config", "--quiet"],
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
