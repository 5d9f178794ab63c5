"""Learning-rate schedulers (timm 0.1.20 semantics) that drive a Paddle optimizer's global rate."""
from .cosine_lr import CosineLRScheduler
from .linear_lr import LinearDecayLRScheduler
from .plateau_lr import PlateauLRScheduler
from .scheduler import Scheduler
from .scheduler_factory import SCHEDULER_NAMES, create_scheduler
from .step_lr import StepLRScheduler

__all__ = [
    "Scheduler",
    "StepLRScheduler",
    "CosineLRScheduler",
    "LinearDecayLRScheduler",
    "PlateauLRScheduler",
    "create_scheduler",
    "SCHEDULER_NAMES",
]
