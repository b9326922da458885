"""Agents composed from cogarch modules, and baselines.

Every agent follows one interface (see :class:`cogarch.agent.Agent`)::

    state = agent.initial_state(seed=episode_seed)
    action, state, record = agent.act(obs, state, info)
    state = agent.end_episode(state)
"""
