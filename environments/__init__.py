"""Fact-stream reasoning and search environments (numpy + networkx; no torch).

Importing this package registers every environment with gymnasium, one flat ``register`` per id::

    import gymnasium as gym, environments
    env = gym.make("cogarch/StoryQA-v0", task=2)
"""

from gymnasium.envs.registration import register, registry

from environments.core import CHARSET, NONE, QUERY, Episode, Fact, FactStreamEnv, Question

register(id="cogarch/GraphSearch-v0", entry_point="environments.graph_search:GraphSearchEnv")
register(id="cogarch/GraphTrace-v0", entry_point="environments.graph_trace:GraphTraceEnv")
register(id="cogarch/StoryQA-v0", entry_point="environments.story_qa:StoryQAEnv")
register(id="cogarch/SortOfClevr-v0", entry_point="environments.sort_of_clevr:SortOfClevrEnv")
register(id="cogarch/Passkey-v0", entry_point="environments.passkey:PasskeyEnv")
register(id="cogarch/SceneGraphQA-v0", entry_point="environments.scene_graph_qa:SceneGraphQAEnv")

# every id registered above, in order (the contract tests in tests/test_envs.py run on each)
ENV_IDS = tuple(env_id for env_id in registry if env_id.startswith("cogarch/"))

__all__ = ["CHARSET", "ENV_IDS", "NONE", "QUERY", "Episode", "Fact", "FactStreamEnv", "Question"]
