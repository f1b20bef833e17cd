"""Redis refusing us (the login, the database, a command) told apart from Redis being away, against a real server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.exceptions import RedisError

from relay.common.redis_client import RedisSettings, create_redis
from relay.common.redis_refusal import RedisRefused, verify_login
from tests.support.realredis import RedisServer, free_port

PASSWORD = "s3cret-pw"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """Wants ``PASSWORD``; two databases; user ``reader`` may only PING and read."""
    acl = ("--user", "reader", "on", ">reader-pw", "~*", "+ping", "+@read", "+hello", "+client")
    server = RedisServer(
        tmp_path / "locked", extra_args=("--requirepass", PASSWORD, "--databases", "2", *acl), password=PASSWORD
    ).start()
    yield server
    server.stop()


async def refusal_of(url: str) -> RedisRefused | None:
    settings = RedisSettings.from_url(url)
    client = create_redis(settings, client_name="test-refusal")
    try:
        await verify_login(client, settings)
    except RedisRefused as exc:
        return exc
    finally:
        await client.aclose()
    return None


@pytest.mark.parametrize(
    ("login", "db", "problem", "detail"),
    [
        (":wrong-pw@", 0, "Redis refused the password", "invalid username-password pair"),
        ("", 0, "Redis requires a password and the URL gives none", ""),
        ("nobody:wrong-pw@", 0, "Redis refused the password", "invalid username-password pair"),
        (f":{PASSWORD}@", 5, "Redis has no such database (see its 'databases' setting)", "DB index is out of range"),
    ],
    ids=["wrong password", "no password", "unknown user", "database beyond 'databases'"],
)
async def test_a_refused_login_or_database_is_a_refusal_naming_it_with_the_password_masked(
    locked_redis: RedisServer, login: str, db: int, problem: str, detail: str
) -> None:
    refusal = await refusal_of(f"redis://{login}127.0.0.1:{locked_redis.port}/{db}")
    assert refusal is not None
    assert refusal.problem == problem
    assert detail in refusal.detail
    assert (
        refusal.url
        == f"redis://{login.replace('wrong-pw', '***').replace(PASSWORD, '***')}127.0.0.1:{locked_redis.port}/{db}"
    )
    assert "wrong-pw" not in str(refusal)
    assert PASSWORD not in str(refusal)
    assert str(refusal).startswith(f"{problem} for {refusal.url}: ")
    assert refusal.naming("(--redis-url, LOGRELAY_CATCH_REDIS_URL)").startswith(
        f"{problem} for {refusal.url} (--redis-url, LOGRELAY_CATCH_REDIS_URL): "
    )


async def test_the_right_login_and_database_pass(locked_redis: RedisServer) -> None:
    assert await refusal_of(f"redis://:{PASSWORD}@127.0.0.1:{locked_redis.port}/1") is None


async def test_redis_away_is_no_refusal_but_an_outage_left_to_the_retries() -> None:
    assert await refusal_of(f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0") is None


async def test_a_command_the_users_acl_forbids_is_a_refusal(locked_redis: RedisServer) -> None:
    settings = RedisSettings.from_url(f"redis://reader:reader-pw@127.0.0.1:{locked_redis.port}/0")
    client = create_redis(settings, client_name="test-refusal")
    try:
        await verify_login(client, settings)  # PING is allowed: the login itself is fine
        with pytest.raises(RedisError) as raised:
            await client.xadd("logrelay", {"record": "{}"})
    finally:
        await client.aclose()
    refusal = RedisRefused.of(raised.value, settings.url)
    assert refusal is not None
    assert refusal.problem == "Redis refused a command logrelay needs to the URL's user (ACL)"
    assert "xadd" in refusal.detail


def test_other_errors_are_no_refusal() -> None:
    assert RedisRefused.of(ConnectionRefusedError(111, "Connection refused"), "redis://127.0.0.1:1/0") is None
    assert RedisRefused.of(ValueError("not Redis's"), "redis://127.0.0.1:1/0") is None
