"""pytest plugin for the mutation pass (``-p no_shrink``): Hypothesis stops at the first failing
example instead of shrinking it (minutes per killed mutant otherwise)."""

from hypothesis import Phase, settings


def pytest_configure(config):
    settings.register_profile("mutation", derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate])
    settings.load_profile("mutation")
