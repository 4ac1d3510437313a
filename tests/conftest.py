"""Test-suite settings: hypothesis runs derandomized so every run sees the same examples."""
from hypothesis import HealthCheck, settings

settings.register_profile("hwsim", derandomize=True, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("hwsim")
