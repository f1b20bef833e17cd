"""Redis URLs: the forms accepted (plain, Sentinel, Cluster), every password masked in logs and messages."""

from __future__ import annotations

import pytest
from redis.asyncio import ConnectionPool, Redis

from relay.common.redis_client import RedisSettings, RedisTarget, create_redis, mask_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://app:s3cret@redis:6379/0", "redis://app:***@redis:6379/0"),
        (
            "redis://redis:6379/0?password=s3cret&health_check_interval=5",
            "redis://redis:6379/0?password=***&health_check_interval=5",
        ),
        ("rediss://:s3cret@redis:6380/0?ssl_password=pem-pass", "rediss://:***@redis:6380/0?ssl_password=***"),
        ("rediss://redis:6380/0?ssl_ca_certs=/etc/ca.pem", "rediss://redis:6380/0?ssl_ca_certs=/etc/ca.pem"),
        ("unix:///run/redis.sock?db=2", "unix:///run/redis.sock?db=2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_every_password_is_masked_and_the_rest_kept(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "s3cret" not in mask_url(url)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2:26379/logs/2?sentinel_password=s3cret",
            "redis+sentinel://app:***@10.0.0.1:26379,10.0.0.2:26379/logs/2?sentinel_password=***",
        ),
        (
            "rediss+sentinel://:s3cret@[::1]:26379,s2/logs?ssl_password=s3cret&ssl_ca_certs=/etc/ca.pem",
            "rediss+sentinel://:***@[::1]:26379,s2/logs?ssl_password=***&ssl_ca_certs=/etc/ca.pem",
        ),
        ("redis+cluster://app:s3cret@n1:7000,n2:7001,n3", "redis+cluster://app:***@n1:7000,n2:7001,n3"),
        ("redis+cluster://n1:7000,n2:7001", "redis+cluster://n1:7000,n2:7001"),
        # Too broken for urlsplit, still masked.
        ("redis+sentinel://app:s3cret@[::1:26379/logs", "redis+sentinel://app:***@[::1:26379/logs"),
    ],
)
def test_passwords_are_masked_in_sentinel_and_cluster_urls(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "s3cret" not in mask_url(url)


def test_a_sentinel_url_names_the_sentinels_the_service_and_both_logins() -> None:
    target = RedisSettings.from_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26380,10.0.0.2,[::1]:26381/logs/3"
        "?sentinel_username=watch&sentinel_password=w"
    ).target
    assert target.kind == "sentinel"
    assert target.nodes == (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("::1", 26381))
    assert (target.service, target.db) == ("logs", 3)
    assert (target.username, target.password) == ("app", "p@ss")
    assert (target.sentinel_username, target.sentinel_password) == ("watch", "w")
    assert not target.tls
    assert not target.sentinel_tls


def test_tls_to_the_data_nodes_and_to_the_sentinels() -> None:
    both = RedisTarget.parse("rediss+sentinel://s1/logs?ssl_ca_certs=/ca.pem&ssl_check_hostname=false")
    assert both.tls
    assert both.sentinel_tls
    assert both.tls_options == {"ssl_ca_certs": "/ca.pem", "ssl_check_hostname": False}
    data_only = RedisTarget.parse("redis+sentinel://s1/logs?ssl=true&sentinel_ssl=false")
    assert data_only.tls
    assert not data_only.sentinel_tls
    assert RedisTarget.parse("rediss+cluster://n1:7000").tls


def test_a_cluster_url_lists_startup_nodes() -> None:
    target = RedisTarget.parse("redis+cluster://:pw@n1:7000,n2:7001,n3")
    assert target.kind == "cluster"
    assert target.nodes == (("n1", 7000), ("n2", 7001), ("n3", 6379))
    assert (target.username, target.password, target.db) == (None, "pw", 0)


def test_plain_urls_are_left_to_redis_py() -> None:
    for url in ("redis://h:6379/0", "rediss://h/1?ssl_cert_reqs=none", "unix:///run/redis.sock?db=2"):
        assert RedisTarget.parse(url).kind == "direct"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379", r"unsupported Redis URL scheme 'http'.*redis://\[user:password@\]host:port/db"),
        ("h:6379", "unsupported Redis URL scheme"),
        ("redis+sentinel://s1:26379,s2:26379", "no Sentinel service name.*redis\\+sentinel://host:port"),
        ("redis+sentinel://s1:26379/", "no Sentinel service name"),
        ("redis+sentinel:///logs", "no host"),
        ("redis+sentinel://s1:port/logs", "bad port"),
        ("redis+sentinel://s1/logs/zero", "not a number"),
        ("redis+sentinel://s1/logs?sentinel_ssl=maybe", "want true or false"),
        ("redis+sentinel://s1/logs?socket_timeout=1", "unknown parameter 'socket_timeout'"),
        ("redis+cluster://n1:7000/2", "only database 0"),
        ("redis+cluster://n1?sentinel_password=x", "unknown parameter 'sentinel_password'"),
        ("redis://", "no host"),
    ],
)
def test_bad_urls_are_refused_with_the_accepted_forms(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisSettings.from_url(url)


def test_an_error_never_shows_the_password() -> None:
    with pytest.raises(ValueError, match="unsupported") as caught:
        RedisSettings.from_url("http://app:s3cret@h:6379")
    assert "s3cret" not in str(caught.value)
    with pytest.raises(ValueError, match="service") as caught:
        RedisSettings.from_url("redis+sentinel://app:s3cret@h:26379")
    assert "s3cret" not in str(caught.value)


def test_a_cluster_client_needs_the_stream_key() -> None:
    with pytest.raises(ValueError, match="slot_key"):
        create_redis(RedisSettings.from_url("redis+cluster://n1:7000"), client_name="test")


async def test_a_plain_url_gives_the_plain_client_with_no_retries() -> None:
    client = create_redis(RedisSettings.from_url("redis://127.0.0.1:1/0"), client_name="test")
    try:
        assert type(client) is Redis
        assert type(client.connection_pool) is ConnectionPool
        assert client.connection_pool.connection_kwargs["retry"].get_retries() == 0
    finally:
        await client.aclose()
