"""Test-suite settings: hypothesis runs derandomized so every run sees the same examples."""
from hypothesis import HealthCheck, settings

settings.register_profile("hwsim", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hwsim")



def pytest_collection_modifyitems(session, config, items):
    """The README figure blocks (``test_readme_figures.py``, the longest chain of work: each
    block runs its example in a subprocess) first.  ``scripts/test.sh`` distributes whole files
    (``--dist loadfile``), so one worker runs the blocks one after another from the start while
    the other takes the rest of the suite: no two torch-heavy blocks run side by side, and the
    longest file does not start last."""
    items.sort(key=lambda item: item.path.name != "test_readme_figures.py")
