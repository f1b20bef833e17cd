"""The other inputs' options: --listen-syslog, --listen-datagram, --listen-http and its credentials."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from relay.cli import main
from relay.cli.options import http_credentials


def options(**given: Any) -> dict[str, Any]:
    return {"http_basic_auth": None, "http_basic_auth_file": None, "listen_http": "127.0.0.1:8080", **given}


def test_credentials_come_from_the_option_and_from_the_lines_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# who may post\nalice:s3cret:with:colons\n\nbob:pw\n")
    pairs = http_credentials(options(http_basic_auth="carol:x", http_basic_auth_file=str(path)))
    assert pairs == (("carol", "x"), ("alice", "s3cret:with:colons"), ("bob", "pw"))
    assert http_credentials(options()) == ()


@pytest.mark.parametrize("text", ["nopassword", ":pw", "user:"])
def test_credentials_without_a_user_or_a_password_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="USER:PASSWORD, both non-empty"):
        http_credentials(options(http_basic_auth=text))


def test_credentials_without_the_http_input_are_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["catch", "--http-basic-auth", "u:p"], env={})
    assert result.exit_code == 2
    assert "--http-basic-auth needs --listen-http" in result.output
    assert "Traceback" not in result.output


def test_config_show_masks_the_password() -> None:
    env = {"LOGRELAY_CATCH_HTTP_BASIC_AUTH": "alice:hunter2"}
    result = CliRunner().invoke(main, ["config", "show", "--json", "catch"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    setting = orjson.loads(result.stdout)["settings"]["--http-basic-auth"]
    assert (setting["value"], setting["source"]) == ("alice:***", "environment")


def test_an_input_address_in_use_is_one_line_naming_that_option(unused_tcp_port: int) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(
            main,
            ["catch", "--listen", f"127.0.0.1:{unused_tcp_port}", "--listen-syslog", f"127.0.0.1:{port}",
             "--redis-url", "redis://127.0.0.1:1/0"],
            env={},
        )  # fmt: skip
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port} (--listen-syslog): Address already in use" in result.output
    assert "Traceback" not in result.output
