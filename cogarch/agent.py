"""The agent interface every agent implements, and the record each cognitive cycle leaves in the trace.

State is an explicit value: ``initial_state`` makes it, ``act`` takes it and returns the next one, and
``end_episode`` clears what an episode owns. Nothing about an episode is kept in agent attributes, so
episodes can be replayed, resumed and batched.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True)
class CycleRecord:
    """What one cognitive cycle did; one line of ``trace.jsonl``.

    ``step`` is the env step within the episode, ``cycle`` the cycle within that step (an env step may
    hold several cycles), ``action`` the action chosen (``None`` on a cycle that does not act), and
    ``extra`` whatever the agent's modules report (winners, slot contents, surprise, ...).
    """

    step: int
    cycle: int
    action: int | None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
