"""Where a run is (round and stage), for what a person is told when it stops: "interrupted during generate
of round 2". Set by the controller as it goes; read by the CLI."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Where:
    round: int | None = None
    stage: str = "start"

    def describe(self) -> str:
        return self.stage if self.round is None else f"{self.stage} of round {self.round}"


NOW = Where()
