"""Counting XLA compilations: `with count_compilations() as compiled: ...; compiled.count`.

What is counted. JAX times every backend compilation of a program (a jitted function, an
eager op's small program, an ahead-of-time `.lower().compile()`) and reports it to
`jax.monitoring` as the duration event ``/jax/core/compile/backend_compile_duration``
(`jax._src.dispatch.BACKEND_COMPILE_EVENT`), with the program's name as ``fun_name``
(e.g. ``"jit(train_step)"``). The event fires only when JAX has no compiled executable for the
call in its in-memory caches: a call that reuses one (same function, argument shapes, dtypes,
weak types and shardings) reports nothing, and neither does a new `jax.jit` object over a
program already compiled.

One exception: with a persistent compilation cache (``jax_compilation_cache_dir``), loading an
executable from disk reports the same duration event, preceded in the same thread by the
event ``/jax/compilation_cache/cache_hits``. Such loads are not compilations: they are kept
apart in `Compilations.loaded_from_disk` and not counted.

Every thread of the process is counted while the block runs (JAX compiles in the calling
thread, so other threads only add what they compile themselves). Blocks may be nested; each
sees the compilations made inside it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
from typing import Iterator

from jax import monitoring

BACKEND_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
PERSISTENT_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


@dataclasses.dataclass
class Compilations:
    """The programs compiled inside a `count_compilations` block.

    names: the ``fun_name`` of each compilation, in order (a name repeats when the same
      function is compiled for another input shape or sharding).
    loaded_from_disk: names of executables read from the persistent cache instead (not counted).
    """

    names: list[str] = dataclasses.field(default_factory=list)
    loaded_from_disk: list[str] = dataclasses.field(default_factory=list)

    @property
    def count(self) -> int:
        """The number of XLA compilations."""
        return len(self.names)

    def by_name(self) -> dict[str, int]:
        """{program name: compilations}, in order of first compilation."""
        return dict(collections.Counter(self.names))


@contextlib.contextmanager
def count_compilations() -> Iterator[Compilations]:
    """Yields a `Compilations` that records every XLA compilation until the block exits."""
    compilations = Compilations()
    # A cache hit is reported just before its duration event, in the thread that compiles.
    pending_hit = threading.local()
    lock = threading.Lock()

    def on_event(event: str, **_) -> None:
        if event == PERSISTENT_CACHE_HIT_EVENT:
            pending_hit.value = True

    def on_duration(event: str, _duration: float, **kwargs) -> None:
        if event != BACKEND_COMPILE_EVENT:
            return
        name = str(kwargs.get("fun_name", "?"))
        loaded = getattr(pending_hit, "value", False)
        pending_hit.value = False
        with lock:
            (compilations.loaded_from_disk if loaded else compilations.names).append(name)

    monitoring.register_event_listener(on_event)
    monitoring.register_event_duration_secs_listener(on_duration)
    try:
        yield compilations
    finally:
        monitoring.unregister_event_duration_listener(on_duration)
        monitoring.unregister_event_listener(on_event)
