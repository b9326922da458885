"""Memories of the workspace: working (PMI slots), long-term (PMI outer products), neural (Titans) and
episodic (EM-LLM). Each follows one protocol: ``initial_state``, ``propose``, ``receive``, ``end_episode``.
"""
