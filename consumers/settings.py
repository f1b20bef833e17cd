"""The file consumer's settings: one frozen, validated object per ``logrelay consume file`` process (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from consumers.file_sink import FsyncPolicy
from consumers.format_check import check_format
from consumers.formatting import DEFAULT_FORMAT
from consumers.rotation import RotationSettings
from relay.common.addresses import ListenAddress
from relay.common.group_staleness import DEFAULT_STALE_AFTER
from relay.common.identity import process_name
from relay.common.redis_client import RedisSettings
from relay.common.stream import DEFAULT_DEAD_LETTER_MAX_LENGTH, StreamKeys

__all__ = ["FileConsumerSettings"]


@dataclass(frozen=True, slots=True)
class FileConsumerSettings:
    """Everything one ``logrelay consume file`` process needs."""

    output: Path
    redis: RedisSettings = field(default_factory=RedisSettings)
    keys: StreamKeys = field(default_factory=StreamKeys)
    group: str = "logrelay-file"
    consumer: str = field(default_factory=process_name)
    format: str = DEFAULT_FORMAT
    placeholder: str = "-"
    fsync: FsyncPolicy = FsyncPolicy.BATCH
    batch_size: int = 1000
    block_ms: int = 1000
    max_deliveries: int = 10
    # Most dead letters kept (about: trimmed by whole stream nodes) when this consumer adds one; 0: no limit.
    dead_letter_max_length: int = DEFAULT_DEAD_LETTER_MAX_LENGTH
    # Least milliseconds between two syncs (fsync, checkpoint, XACK) under load.
    sync_interval_ms: int = 10
    # Seconds between trims of what every group acknowledged (0: never trim).
    trim_interval: float = 10.0
    # Seconds without a read after which another consumer group of the stream is warned about
    # (consumers.stale_groups): it holds entries back from trimming.
    stale_group_after: float = DEFAULT_STALE_AFTER
    rotation: RotationSettings = field(default_factory=RotationSettings)
    # HTTP liveness/readiness/metrics; None: no endpoint.
    health_listen: ListenAddress | None = None

    def __post_init__(self) -> None:
        if self.batch_size <= 0 or self.block_ms <= 0 or self.max_deliveries <= 0:
            raise ValueError("batch-size, block-ms and max-deliveries must be positive")
        if self.trim_interval < 0 or self.sync_interval_ms < 0:
            raise ValueError("trim-interval and sync-interval-ms must not be negative")
        if self.stale_group_after <= 0:
            raise ValueError("stale-group-after must be positive")
        if self.dead_letter_max_length < 0:
            raise ValueError("dead-letter-max-length must not be negative")
        if not self.group or not self.consumer:
            raise ValueError("group and consumer names must not be empty")
        check_format(self.format, self.placeholder)  # FormatError (a ValueError) if it cannot render
