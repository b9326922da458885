"""Thought Anchors on StoryQA: do the cycles the answer depends on most include the supporting facts?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_anchors.py [--agent story_qa_task2] [--task 2] [--episodes 50]

For each held-out episode (seeds 0, 1, ...), every reading cycle is suppressed in turn
(cogarch.inspect.anchors.counterfactual_importance) and ranked by how much the probability of the correct
answer drops. "Top-ranked" = the top m reading cycles, m = the number of supporting facts bAbI names for the
question (2 on task 2); an episode is a hit when every supporting fact's cycle is among them. Prints the
fraction of hits over all episodes, and over the episodes the agent answered correctly, with the agent's
accuracy (a counterfactual of an agent that does not know the answer says little).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import environments  # noqa: E402,F401
from agents.checkpoint import load_agent  # noqa: E402
from cogarch.inspect.anchors import anchor_hit, counterfactual_importance  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="story_qa_task2", help="a shipped checkpoint name or a train run folder")
    parser.add_argument("--task", type=int, default=2, help="StoryQA task family")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="first episode seed (held out from training)")
    args = parser.parse_args(argv)
    env = gym.make("cogarch/StoryQA-v0", task=args.task)
    agent = load_agent(args.agent, vocab=env.unwrapped.vocab)
    start = time.perf_counter()
    hits, correct, hits_correct, any_hit, missed, redundant = 0, 0, 0, 0, 0, 0
    for i in range(args.episodes):
        table = counterfactual_importance(agent, env, args.seed + i, reading_only=True)
        hit = anchor_hit(table)
        support = set(table.attrs["supporting"])
        any_hit += bool(support & set(table.head(len(support))["step"]))
        # a missed supporting fact is "redundant" when another reading fact links the same two entities
        # (subject and object words): suppressing one cycle then leaves the link in memory
        facts = dict(zip(table.step, table.fact.str.split()))
        for step in support - set(table.head(len(support))["step"]):
            missed += 1
            s, _, o = facts[step]
            redundant += any(f[0] == s and f[2] == o for t, f in facts.items() if t != step)
        hits += hit
        if table.attrs["base_correct"]:
            correct += 1
            hits_correct += hit
    n = args.episodes
    result = {"episodes": n, "agent_accuracy": correct / n, "anchor_fraction": hits / n,
              "anchor_fraction_when_correct": hits_correct / correct if correct else float("nan"),
              "any_supporting_in_top_m": any_hit / n, "missed_supporting": missed,
              "missed_with_a_redundant_fact": redundant, "wall_s": time.perf_counter() - start}
    print(f"StoryQA task {args.task}, agent {args.agent}, {n} episodes (seeds {args.seed}..{args.seed + n - 1})")
    print(f"agent accuracy:                                   {result['agent_accuracy']:.3f}")
    print(f"all supporting facts in the top-m cycles (m = #supporting): {result['anchor_fraction']:.3f}")
    print(f"  among the episodes answered correctly:          {result['anchor_fraction_when_correct']:.3f}")
    print(f"at least one supporting fact in the top-m:        {result['any_supporting_in_top_m']:.3f}")
    print(f"supporting facts missed: {missed}, of which another reading fact links the same subject and object: "
          f"{redundant}")
    print(f"wall time: {result['wall_s']:.1f} s")
    return result


if __name__ == "__main__":
    main()
