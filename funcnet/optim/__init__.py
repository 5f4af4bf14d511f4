"""``funcnet.optim``: torch's optimizers as pure ``optax.GradientTransformation``s.

Every optimizer takes torch's keyword arguments and defaults, but **no params argument** —
JAX optimizers are pure functions of (grads, state, params)::

    # torch: torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    optimizer = funcnet.optim.SGD(lr=0.01, momentum=0.9, weight_decay=5e-4)
    opt_state = optimizer.init(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)          # torch: optimizer.step()
    params = optax.apply_updates(params, updates)

There is no ``zero_grad``: gradients are returned by ``jax.grad``, never accumulated.
``lr`` accepts a float or any schedule (``funcnet.optim.lr_scheduler``, or optax's); the update
with optax count ``c`` uses ``lr(c)``. Everything composes with other optax transforms
(``optax.chain``, ``optax.MultiSteps``…). ``get_lr(opt_state)`` reads the current lr.
"""

from funcnet.optim import lr_scheduler
from funcnet.optim.adadelta import Adadelta
from funcnet.optim.adagrad import Adagrad
from funcnet.optim.adam import Adam, AdamW
from funcnet.optim.adamax import Adamax
from funcnet.optim.clip import clip_grad_norm, clip_grad_value
from funcnet.optim.freeze import freeze
from funcnet.optim.learning_rate import ConstantLRState, LRState, get_lr, get_lrs, scale_by_lr
from funcnet.optim.nadam import NAdam
from funcnet.optim.param_groups import param_groups
from funcnet.optim.radam import RAdam
from funcnet.optim.rmsprop import RMSprop
from funcnet.optim.sgd import SGD
from funcnet.optim.transforms import (
    maximize,
    scale_by_momentum,
    scale_by_torch_adagrad,
    scale_by_torch_adam,
    scale_by_torch_adamax,
    scale_by_torch_nadam,
    scale_by_torch_radam,
)

__all__ = [
    "SGD",
    "Adadelta",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "ConstantLRState",
    "LRState",
    "NAdam",
    "RAdam",
    "RMSprop",
    "clip_grad_norm",
    "clip_grad_value",
    "freeze",
    "get_lr",
    "get_lrs",
    "lr_scheduler",
    "maximize",
    "param_groups",
    "scale_by_lr",
    "scale_by_momentum",
    "scale_by_torch_adagrad",
    "scale_by_torch_adam",
    "scale_by_torch_adamax",
    "scale_by_torch_nadam",
    "scale_by_torch_radam",
]
