"""Reference agents: uniform random actions (chance level) and the oracle (the env's own answer).

They bound every result table from below and above, and exercise the run loop on any gymnasium env.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from cogarch.agent import CycleRecord


class RandomState(NamedTuple):
    rng: np.random.Generator
    step: int


class RandomAgent:
    """Samples each action uniformly from the action space; the chance baseline.

    Inputs: any observation (ignored). Outputs: an action from ``action_space``.
    State: a per-episode random generator seeded from (agent seed, episode seed), so an episode's actions
    depend only on its seed and a resumed run repeats them exactly.
    """

    def __init__(self, action_space: spaces.Space, seed: int = 0, observation_space: spaces.Space | None = None,
                 vocab: Sequence[str] | None = None):
        if isinstance(seed, bool) or not isinstance(seed, Integral) or seed < 0:  # numpy seeds its generators from >= 0
            raise ValueError(f"seed={seed!r} is out of range; allowed: integer >= 0")
        self.action_space = action_space
        self.seed = int(seed)

    def initial_state(self, seed: int | None = None) -> RandomState:
        entropy = [self.seed] if seed is None else [self.seed, int(seed)]
        return RandomState(np.random.default_rng(entropy), 0)

    def act(self, obs: Any, state: RandomState, info: dict[str, Any]):
        space = self.action_space
        if isinstance(space, spaces.Discrete):
            action = int(space.start + state.rng.integers(space.n))
        else:  # any other space: seed its sampler from the episode's generator
            space.seed(int(state.rng.integers(2**31)))
            action = space.sample()
        record = CycleRecord(step=state.step, cycle=0, action=action if isinstance(action, int) else None)
        return action, RandomState(state.rng, state.step + 1), [record]

    def end_episode(self, state: RandomState) -> None:
        return None


class OracleAgent:
    """Plays ``info["oracle_action"]``, the env's correct action; the ceiling every env must reach.

    Works on any env that reports ``oracle_action`` in ``info`` at reset and at every step (all cogarch
    envs do); anything else raises a clear error. State: the step counter.
    """

    def __init__(self, action_space: spaces.Space, seed: int = 0, observation_space: spaces.Space | None = None,
                 vocab: Sequence[str] | None = None):
        self.action_space = action_space

    def initial_state(self, seed: int | None = None) -> int:
        return 0

    def act(self, obs: Any, step: int, info: dict[str, Any]):
        if "oracle_action" not in info:
            raise ValueError(
                "OracleAgent needs info['oracle_action'] from the env; this env does not provide it "
                "(cogarch/* envs do). Use agent=random for third-party envs."
            )
        action = int(info["oracle_action"])
        return action, step + 1, [CycleRecord(step=step, cycle=0, action=action)]

    def end_episode(self, state: int) -> None:
        return None
