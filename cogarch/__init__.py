"""cogarch: a cognitive-architecture agent simulator.

The architecture (torch modules and the cognitive cycle) lives here and knows no environment; the
environments are in the sibling package ``environments`` and the agents in ``agents``.
"""

__version__ = "0.1.0"
