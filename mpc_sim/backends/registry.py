"""Backends by name: ``Simulator(config, backend=NAME)`` and ``--backend NAME`` look them up here.

``local`` and ``dask`` are registered when :mod:`mpc_sim.backends` is imported; a package adds its
own with :func:`register_backend` (a factory called with no argument, or with the options the
caller gave for it, returning a :class:`~mpc_sim.backends.interface.Backend`).

Examples
--------
>>> from mpc_sim.backends.local import LocalBackend
>>> class Here(LocalBackend):
...     name = "here"
>>> register_backend("here", Here)
>>> "here" in backend_names(), make_backend("here").name
(True, 'here')
>>> unregister_backend("here")
>>> make_backend("here")
Traceback (most recent call last):
...
mpc_sim.errors.UnknownBackend: backend must be one of ('local', 'dask'), got 'here'
"""
from __future__ import annotations

from collections.abc import Callable

from ..errors import ParameterError, UnknownBackend
from .dask import DaskBackend
from .interface import Backend
from .local import LocalBackend

__all__ = ["register_backend", "unregister_backend", "backend_names", "make_backend"]

_FACTORIES: dict[str, Callable[..., Backend]] = {}


def register_backend(name: str, factory: Callable[..., Backend], *, replace: bool = False) -> None:
    """Make ``factory`` the backend called ``name``. :class:`~mpc_sim.errors.ParameterError` for
    an empty or non-string name, a factory that is not callable, or a name already taken (unless
    ``replace``)."""
    if not isinstance(name, str) or not name.strip():
        raise ParameterError(f"backend name must be a non-empty string, got {name!r}")
    if not callable(factory):
        raise ParameterError(f"backend factory for {name!r} must be callable, got {type(factory).__name__}")
    if name in _FACTORIES and not replace:
        raise ParameterError(f"backend {name!r} is already registered (pass replace=True to replace it)")
    _FACTORIES[name] = factory


def unregister_backend(name: str) -> None:
    """Forget the backend called ``name`` (:class:`~mpc_sim.errors.UnknownBackend` if there is none)."""
    if name not in _FACTORIES:
        raise UnknownBackend(name, backend_names())
    del _FACTORIES[name]


def backend_names() -> tuple[str, ...]:
    """The registered names, in registration order."""
    return tuple(_FACTORIES)


def make_backend(name: str, options: object = None) -> Backend:
    """The backend called ``name``: its factory called with ``options`` (with no argument when
    ``None``). :class:`~mpc_sim.errors.UnknownBackend` listing the registered names if there is
    none; TypeError if the factory does not return a :class:`Backend`."""
    if not isinstance(name, str) or name not in _FACTORIES:
        raise UnknownBackend(name, backend_names())
    factory = _FACTORIES[name]
    backend = factory() if options is None else factory(options)
    if not isinstance(backend, Backend):
        raise TypeError(f"the factory of backend {name!r} returned a {type(backend).__name__}, not a Backend")
    return backend


register_backend("local", LocalBackend)
register_backend("dask", DaskBackend)
