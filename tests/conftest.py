"""Test-suite settings: hypothesis runs derandomized so every run sees the same examples; the
longest tests are collected first."""
from hypothesis import HealthCheck, settings

settings.register_profile("hwsim", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hwsim")

# The longest tests (each README figure block regenerated, then the model gallery) go first, so
# that with two workers (scripts/test.sh) they start early instead of running alone at the end;
# the rest keep their order.
_LONGEST_FIRST = ("test_readme_figures.py", "test_model_gallery.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        name = item.path.name
        return _LONGEST_FIRST.index(name) if name in _LONGEST_FIRST else len(_LONGEST_FIRST)

    items.sort(key=rank)  # stable: each file's own order is kept
