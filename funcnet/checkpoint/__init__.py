"""Checkpoints of whole training states: :class:`CheckpointManager` over :func:`funcnet.save`."""

from funcnet.checkpoint.manager import CheckpointInfo, CheckpointManager

__all__ = ["CheckpointInfo", "CheckpointManager"]
