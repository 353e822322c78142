"""Configuration from the environment (``HILNAS_*`` variables), with embedded defaults.

The defaults run everything on one machine: a SQLite file in the working directory, a local Ray
instance and the local CPU as the measuring device.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Process-wide settings; every field can be overridden by ``HILNAS_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="HILNAS_", extra="ignore")

    db_url: str = Field("sqlite:///hilnas.db", description="SQLAlchemy URL of the result store")
    ray_address: str | None = Field(None, description="Ray cluster address; None starts a local instance")
    ray_jobs_address: str | None = Field(
        None, description="Ray Jobs API address of the cluster's head (e.g. http://head:8265), used by the dashboard"
    )
    device: str = Field("local-cpu", description="default measuring device (Ray resource hw:<device>)")
    cache_dir: Path = Field(Path.home() / ".cache" / "hilnas", description="backbones, corpora, datasets")
    artifact_dir: Path = Field(Path("hilnas_runs"), description="where exported files are written")
    baseline_span_s: float = Field(
        20.0,
        ge=0,
        description="seconds over which a drift reference's first baseline on a device is measured (see "
        "latency_models.reference.measure_baseline); 0 measures it at once",
    )
    llm_model: str | None = Field(None, description="litellm model name; None means offline judging")
    llm_base_url: str | None = Field(None, description="OpenAI-compatible base URL for the LLM")
    llm_api_key: str | None = Field(None, description="API key for the LLM provider")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process (tests call ``get_settings.cache_clear()`` after changing env)."""
    return Settings()
