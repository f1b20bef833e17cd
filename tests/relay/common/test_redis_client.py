"""Redis URLs in logs and messages: every password masked, nothing else changed."""

from __future__ import annotations

import pytest

from relay.common.redis_client import mask_url


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
