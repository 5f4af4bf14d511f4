"""``funcnet.nn.utils``: torch.nn.utils equivalents as pure functions over parameter trees.

- ``clip_grad_norm_`` / ``clip_grad_value_``: return the clipped gradients (JAX arrays are
  immutable) instead of modifying ``.grad`` in place.
- ``split_trainable`` / ``merge`` / ``named_leaves``: freezing (torch's ``requires_grad_(False)``)
  by splitting the parameter tree so that gradients are only taken of the trainable part.
"""

from funcnet.nn.utils.clip_grad import clip_grad_norm_, clip_grad_value_, get_total_norm
from funcnet.nn.utils.trainable import as_predicate, merge, named_leaves, split_trainable, tree_names

__all__ = [
    "as_predicate",
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "merge",
    "named_leaves",
    "split_trainable",
    "tree_names",
]
