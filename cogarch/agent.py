"""The agent interface every agent implements (records of its cycles are `cogarch.trace.CycleRecord`).

State is an explicit value: ``initial_state`` makes it, ``act`` takes it and returns the next one, and
``end_episode`` clears what an episode owns. Nothing about an episode is kept in agent attributes, so
episodes can be replayed, resumed and batched.
"""

from __future__ import annotations

from typing import Any, Protocol

from cogarch.trace import CycleRecord

__all__ = ["Agent", "CycleRecord"]


class Agent(Protocol):
    """What the run loop needs from an agent."""

    def initial_state(self, seed: int | None = None) -> Any:
        """A fresh per-episode state; ``seed`` makes stochastic agents repeatable per episode."""
        ...

    def act(self, obs: Any, state: Any, info: dict[str, Any]) -> tuple[Any, Any, list[CycleRecord]]:
        """Choose an action from an observation; return it, the next state and the cycles it took."""
        ...

    def end_episode(self, state: Any) -> Any:
        """Clear what the episode owns; return what outlives it (``None`` if nothing)."""
        ...
