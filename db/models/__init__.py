"""ORM models, one module per area; importing this package registers every table on ``Base``."""

from db.models.agent import AgentDecision
from db.models.base import Base
from db.models.core import Artifact, HypervolumePoint, Measurement, Search, Trial
from db.models.judge import JudgeRun, JudgeVerdict
from db.models.latency import DeviceProfile, LatencyPredictorRecord, ReferenceBaseline
from db.models.pipeline import PipelineRun, PipelineStage
from db.models.scaling import ScalingDataset, ScalingFit, ScalingPoint, ScalingRun, ScalingSweep

__all__ = [
    "AgentDecision",
    "Artifact",
    "Base",
    "DeviceProfile",
    "HypervolumePoint",
    "JudgeRun",
    "JudgeVerdict",
    "LatencyPredictorRecord",
    "Measurement",
    "PipelineRun",
    "PipelineStage",
    "ReferenceBaseline",
    "ScalingDataset",
    "ScalingFit",
    "ScalingPoint",
    "ScalingRun",
    "ScalingSweep",
    "Search",
    "Trial",
]
