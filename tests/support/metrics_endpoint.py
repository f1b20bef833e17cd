"""A process's /metrics, scraped as Prometheus does, as {sample name: value}."""

from __future__ import annotations

import urllib.request

__all__ = ["scrape"]


def scrape(health_port: int) -> dict[str, float]:
    """The samples of ``http://127.0.0.1:PORT/metrics`` (unlabelled names; labelled ones keep their labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/metrics", timeout=10) as response:
        lines = response.read().decode().splitlines()
    samples = (line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}
