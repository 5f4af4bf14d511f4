"""``funcnet.vision``: picture helpers — torchvision's ``make_grid``/``save_image`` and a training-curve plot.

Pillow (``save_image``) and matplotlib (``plot_history``) are optional:
``pip install 'funcnet[vision]'``.
"""

from funcnet.vision.plot import plot_history
from funcnet.vision.utils import make_grid, save_image, to_uint8_hwc

__all__ = ["make_grid", "plot_history", "save_image", "to_uint8_hwc"]
