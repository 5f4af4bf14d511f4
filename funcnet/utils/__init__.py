"""funcnet.utils: ``funcnet.utils.data`` (datasets, samplers, DataLoader), as ``torch.utils``."""
