"""What a family of models must provide to be searched.

A family knows its default search space and objectives, rejects candidates that cannot be built,
evaluates a candidate's quality (in a Ray task on any node) and, when it has latency objectives,
measures the candidate on a device (in the device's actor, one candidate at a time).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from search.space import SearchSpace


class InvalidCandidate(ValueError):
    """A parameter combination that cannot be built; the message says why."""


class FamilyOptions(BaseModel):
    """Family-specific settings from a spec's ``options``; families subclass this."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class ObjectiveDefault:
    name: str
    direction: str  # "minimize" or "maximize"
    reference: float | None = None


@dataclass
class TrialContext:
    """Where and what a trial evaluation is running for."""

    search_id: int
    trial_number: int
    attempt: int
    seed: int
    artifact_dir: Path
    #: The store the search writes to; trial work that reads the store (the measurement cache, a latency
    #: predictor) uses it, since a worker's own settings may name another. None: the worker's settings.
    db_url: str | None = None


@dataclass
class Evaluation:
    """What one half of a trial (quality or latency) reports back to the driver.

    ``metrics`` are the numbers objectives and constraints are read from; ``measurements`` are
    rows for the measurements table and ``artifacts`` files to record (dicts with ``kind`` and
    ``path``).
    """

    metrics: dict[str, float]
    measurements: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Family(ABC):
    """A searchable family of models; subclasses are registered by name in ``search.registry``."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type[FamilyOptions]] = FamilyOptions

    def __init__(self, options: FamilyOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    @property
    def needs_device(self) -> bool:
        """True when trials also go to the device actor (``measure`` is implemented); subclasses override."""
        return False

    @abstractmethod
    def default_space(self) -> SearchSpace:
        """The space searched when a spec does not give one."""

    @abstractmethod
    def default_objectives(self) -> list[ObjectiveDefault]:
        """Objectives used when a spec does not name any; also the metrics the family reports."""

    def check_candidate(self, params: dict[str, Any]) -> None:
        """Raise ``InvalidCandidate`` when ``params`` cannot be built (default: all can)."""
        return None

    def arch_hash(self, params: dict[str, Any]) -> str | None:
        """A stable hash of the architecture, used as the measurement cache key."""
        return None

    @abstractmethod
    def evaluate(self, params: dict[str, Any], context: TrialContext) -> Evaluation:
        """Quality of one candidate; runs in a Ray task on any node with free resources."""

    def measure(self, params: dict[str, Any], device: str, context: TrialContext) -> Evaluation:
        """Latency of one candidate on ``device``; runs inside that device's actor."""
        raise NotImplementedError(f"family {self.name!r} has no latency measurement")
