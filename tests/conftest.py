"""Test-wide settings: thread pools and hypothesis profiles.

numba's first compile is slow, so hypothesis runs without deadlines. The ``ci`` profile
(selected when the environment variable ``CI`` is set) bounds the number of examples so the
suite stays within its time budget on 2 cores; ``dev`` explores more.
"""
import os

# numpy's BLAS threads and numba's parallel loops compete on 2 cores: keep BLAS single-threaded.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from hypothesis import HealthCheck, settings  # noqa: E402

settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "dev",
    deadline=None,
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
