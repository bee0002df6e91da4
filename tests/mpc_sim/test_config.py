"""MPCConfig: the derived sizes are the documented ceilings, exactly, and nonsense is refused."""
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mpc_sim import ConfigError, MPCConfig
from mpc_sim.strategies import configs


@given(st.integers(1, 10**6))
def test_square_numbers_at_eps_half_give_exact_roots(k):
    cfg = MPCConfig(n=k * k, eps=0.5)
    assert (cfg.s, cfg.machines, cfg.input_machines) == (k, k, k)


@given(st.integers(1, 1000), st.sampled_from([(0.25, 4, 1), (0.75, 4, 3), (0.5, 4, 2)]))
def test_exact_fourth_powers_give_exact_sizes(k, case):
    eps, power, s_power = case
    cfg = MPCConfig(n=k ** power, eps=eps)
    assert cfg.s == k ** s_power
    assert cfg.machines == k ** (power - s_power)


@given(st.integers(1, 10**4))
def test_cubes_at_eps_one_third_give_exact_roots_despite_inexact_exponent(k):
    cfg = MPCConfig(n=k ** 3, eps=1 / 3)        # 1/3 and 1 - 1/3 are not exact in binary
    assert (cfg.s, cfg.machines) == (k, k * k)


@given(st.integers(1, 10**12), st.integers(1, 4))
def test_s_is_the_exact_ceiling_of_a_times_root_n_for_every_n(n, a):
    # ceil(a * sqrt(n)) in integer arithmetic: the smallest t with t * t >= a * a * n.
    exact = math.isqrt(a * a * n - 1) + 1
    assert MPCConfig(n=n, eps=0.5, memory_factor=a).s == exact


@given(st.integers(2, 10**6))
def test_one_more_than_a_square_rounds_up(k):
    cfg = MPCConfig(n=k * k + 1, eps=0.5, machines_factor=2)
    assert cfg.s == k + 1


def test_documented_example_sizes():
    cfg = MPCConfig(n=2**16, eps=0.5)
    assert (cfg.s, cfg.machines, cfg.input_machines) == (256, 256, 256)
    assert MPCConfig(n=10**6, eps=0.5, memory_factor=2).s == 2000
    assert MPCConfig(n=1, eps=0.3).s == 1 and MPCConfig(n=1, eps=0.3).machines == 1


@given(configs())
def test_every_valid_config_holds_its_input_and_sizes_follow_the_formulas(cfg):
    assert cfg.input_machines <= cfg.machines
    assert cfg.input_machines * cfg.s >= cfg.n > (cfg.input_machines - 1) * cfg.s
    # each size is the ceiling of its formula, or the integer the formula is within float rounding of
    for size, x in ((cfg.s, cfg.memory_factor * cfg.n ** cfg.eps),
                    (cfg.machines, cfg.machines_factor * cfg.n ** (1 + cfg.gamma - cfg.eps))):
        assert size == max(1, math.ceil(x)) or (size == round(x) and abs(x - size) <= 1e-12 * x)
    assert cfg.output_machines(cfg.n) == cfg.input_machines
    assert cfg.output_machines(0) == 0


@given(configs())
def test_to_dict_from_dict_round_trip(cfg):
    data = cfg.to_dict()
    assert set(data) >= {"n", "eps", "gamma", "s", "machines"}
    assert MPCConfig.from_dict(data) == cfg


def test_from_dict_rejects_stored_sizes_that_disagree():
    data = MPCConfig(n=100, eps=0.5).to_dict()
    data["s"] = 11
    with pytest.raises(ConfigError, match="stored s = 11 disagrees"):
        MPCConfig.from_dict(data)


@pytest.mark.parametrize("eps", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_eps_outside_open_unit_interval_is_refused(eps):
    with pytest.raises(ConfigError, match="eps must satisfy 0 < eps < 1"):
        MPCConfig(n=100, eps=eps)


@pytest.mark.parametrize("n", [0, -5, True, False, 5.0, "10", None])
def test_n_must_be_a_positive_int_and_not_a_bool(n):
    with pytest.raises(ConfigError, match="n must be an integer >= 1"):
        MPCConfig(n=n, eps=0.5)


@pytest.mark.parametrize("gamma", [-0.1, float("inf"), float("nan")])
def test_gamma_must_be_finite_and_non_negative(gamma):
    with pytest.raises(ConfigError, match="gamma"):
        MPCConfig(n=100, eps=0.5, gamma=gamma)


@pytest.mark.parametrize("field", ["memory_factor", "machines_factor"])
@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_constants_must_be_finite_and_positive(field, value):
    with pytest.raises(ConfigError, match=field):
        MPCConfig(n=100, eps=0.5, **{field: value})


def test_cluster_too_small_for_its_input_is_refused_with_the_numbers():
    with pytest.raises(ConfigError, match=r"n = 100 words need 10 machines of s = 10 words, but there are only 5"):
        MPCConfig(n=100, eps=0.5, machines_factor=0.5)


def test_config_is_frozen_and_a_config_error_is_a_value_error():
    cfg = MPCConfig(n=10, eps=0.5)
    with pytest.raises(AttributeError):
        cfg.n = 11
    assert issubclass(ConfigError, ValueError)
