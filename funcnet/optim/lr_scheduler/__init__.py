"""``funcnet.optim.lr_scheduler``: torch's lr schedulers as jittable optax schedules.

Every scheduler is a callable ``schedule(count) -> lr`` usable as ``lr=`` of any funcnet
optimizer or of any optax optimizer. Differences from torch: the base lr is the first argument
(instead of the optimizer), and there is no ``scheduler.step()`` — the optimizer's update count
drives the schedule. Mapping of counts (see ``LRSchedule``): the update made after ``c`` updates
uses torch's lr after ``c`` ``scheduler.step()`` calls when stepped per batch, or after
``c // steps_per_epoch`` calls when stepped per epoch (``steps_per_epoch=S``).
``ReduceLROnPlateau`` is metric-driven: a pure ``plateau.step(opt_state, metric)``.
"""

from funcnet.optim.lr_scheduler._base import LRSchedule, check_horizon, optimizer_horizon, per_epoch
from funcnet.optim.lr_scheduler.cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from funcnet.optim.lr_scheduler.one_cycle import OneCycleLR
from funcnet.optim.lr_scheduler.plateau import PlateauState, ReduceLROnPlateau
from funcnet.optim.lr_scheduler.sequential import SequentialLR
from funcnet.optim.lr_scheduler.step import (
    ConstantLR,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiStepLR,
    StepLR,
)

__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LRSchedule",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "PlateauState",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
    "check_horizon",
    "optimizer_horizon",
    "per_epoch",
]
