"""ORM models, one module per area; importing this package registers every table on ``Base``."""

from db.models.base import Base
from db.models.core import Artifact, HypervolumePoint, Measurement, Search, Trial
from db.models.judge import JudgeRun, JudgeVerdict

__all__ = [
    "Artifact",
    "Base",
    "HypervolumePoint",
    "JudgeRun",
    "JudgeVerdict",
    "Measurement",
    "Search",
    "Trial",
]
