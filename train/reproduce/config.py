""":class:`ReproduceConfig`: what ``reproduce`` needs, written as ``OUT/reproduce_config.json``."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from clifvqa_core.config import JsonConfig
from clifvqa_core.errors import ConfigError
from clifvqa_core.semantic.extract_config import ExtractConfig
from train.config import TrainConfig

__all__ = ["ReproduceConfig", "DATASET_NAMES"]

#: the paper's four datasets, in the order the chain extracts them
DATASET_NAMES = ("lsvq", "konvid1k", "livevqc", "youtubeugc")


@dataclass(frozen=True)
class ReproduceConfig(JsonConfig):
    """The roots of the datasets given (None: left out), the output folder, and the stage configs every step
    derives its own from: ``extract`` (one store per dataset, all with this extraction) and ``train`` (the
    recipe fields: epochs / EMA / frozen epochs left None come from ``train.config.RECIPES`` per step;
    ``train.init`` is the LSVQ training's start, e.g. Kinetics-400 Swin weights; its data fields are
    replaced per step). ``model_config``: a preset name or a ModelConfig JSON file (``train --model-config``);
    ``descriptions``: the selection of the CLiF-VQA rows (``train --descriptions``).
    ``skip_missing``: go on without listed videos that are absent (refused otherwise, after the plan).
    ``calibrate_steps``: timed training steps / CLIP batches of the plan's calibration (0: no estimate).
    """

    out: str = "reproduce"
    lsvq: str | None = None
    konvid1k: str | None = None
    livevqc: str | None = None
    youtubeugc: str | None = None
    extract: ExtractConfig = field(default_factory=ExtractConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    model_config: str = "fastvqa-b"
    descriptions: str = "all"
    backend: str = "zarr"
    shard_size: int = 64
    skip_missing: bool = False
    calibrate_steps: int = 2

    def __post_init__(self) -> None:
        if not self.roots():
            raise ConfigError("reproduce needs at least one dataset: --lsvq, --konvid, --livevqc or --youtubeugc")
        if self.backend not in ("zarr", "hdf5"):
            raise ConfigError(f"ReproduceConfig.backend {self.backend!r} unknown; known: zarr, hdf5")
        if self.shard_size < 1 or self.calibrate_steps < 0:
            raise ConfigError("ReproduceConfig: shard_size >= 1 and calibrate_steps >= 0 are required")

    def roots(self) -> dict[str, Path]:
        """Dataset name -> root, for the datasets given, in :data:`DATASET_NAMES` order."""
        return {n: Path(getattr(self, n)).expanduser().resolve() for n in DATASET_NAMES if getattr(self, n)}
