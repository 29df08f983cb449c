"""``reproduce``: the paper's Tables 1 and 2 in one resumable command (plan -> extract -> LSVQ training ->
intra/cross tests -> fine-tunes -> tables). See :mod:`train.reproduce.plan` for the steps and
:mod:`train.reproduce.chain` for the done markers."""
from .chain import InputsChangedError, run_reproduce
from .config import DATASET_NAMES, ReproduceConfig
from .plan import format_plan, make_plan

__all__ = ["ReproduceConfig", "DATASET_NAMES", "run_reproduce", "make_plan", "format_plan", "InputsChangedError"]
