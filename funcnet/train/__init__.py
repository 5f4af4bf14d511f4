"""Training: ``TrainState``, compiled train/eval steps, metrics, the ``fit`` loop, compiled epochs.

torch → funcnet::

    model.train(); for x, y in loader: ...step...   →  state, history = fit(model, state, loader, ...)
    one optimisation step                           →  state, metrics = train_step(state, (x, y))
    with torch.no_grad(): model.eval(); ...         →  metrics = eval_step(state, (x, y))
"""

from funcnet.train import metrics
from funcnet.train.callbacks import Callback, CSVLogger, EarlyStopping, JSONLogger, ModelCheckpoint
from funcnet.train.epoch import make_epoch_fn
from funcnet.train.fit import NonFiniteLossError, current_lr, evaluate, fit
from funcnet.train.state import TrainState
from funcnet.train.step import EvalStep, TrainStep, make_eval_step, make_train_step

__all__ = [
    "CSVLogger", "Callback", "EarlyStopping", "EvalStep", "JSONLogger", "ModelCheckpoint", "NonFiniteLossError",
    "TrainState", "TrainStep", "current_lr", "evaluate", "fit", "make_epoch_fn", "make_eval_step",
    "make_train_step", "metrics",
]
