"""A :class:`relay.publish.read_gate.FlowControl` without sockets: it records what it was asked, in order."""

from __future__ import annotations


class RecordingFlow:
    def __init__(self) -> None:
        self.events: list[str] = []

    def pause_reading(self) -> None:
        self.events.append("pause")

    def resume_reading(self) -> None:
        self.events.append("resume")
