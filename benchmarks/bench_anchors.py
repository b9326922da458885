"""Thought Anchors on StoryQA: do the cycles the answer depends on most include the supporting facts?

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_anchors.py [--agent story_qa_task2] [--task 2] [--episodes 50]

(part of `make bench`, with the defaults; it prints a section of benchmarks/results.md)

For each held-out episode (seeds 0, 1, ...), every reading cycle is suppressed in turn
(cogarch.inspect.anchors.counterfactual_importance) and ranked by its counterfactual importance: as in Thought
Anchors, the KL divergence of the answer distribution with the cycle suppressed from the one without
(``--measure p_drop``: how much the probability of the correct answer drops; the bench prints the other
measure's hit rates beside). "Top-ranked" = the top m reading cycles, m = the number of supporting facts bAbI
names for the question (2 on task 2); an episode is a hit when every supporting fact's cycle is among them.
Prints the fraction of hits over all episodes, and over the episodes the agent answered correctly, with the
agent's accuracy (a counterfactual of an agent that does not know the answer says little).

Redundant evidence: bAbI names one sufficient set of supporting facts, not the necessary ones. "John got the
football. John went to the kitchen. John dropped the football." names the move and the drop, yet without the drop
John still holds the football in the kitchen: the answer stays, and what ranks the drop is only how far the answer
distribution moves. On tasks 1 and 2 the bench re-reads each story with one supporting fact left out, by the
generator's rules (an actor is where he last went; an object is with its holder, or where it was dropped by an
actor whose room was known), and counts the episodes whose every supporting fact changes the answer when left out.
For an agent that answers by the story's rules, a measure that sees only whether the answer changes cannot score
above that fraction (in the other episodes a supporting fact's deletion leaves the answer as it was); the KL
divergence also sees shifts within a kept answer, so it may. The bench also prints the agent's hits on those
episodes.

Resampling, the paper's first method: each reading step is also replayed with its fact replaced by each fact of
the env's support that differs from it in one role (``intervention="resample"``), and ranked by the KL divergence
of the mean answer distribution over those resamples (``p_drop``: the mean drop). Deletion cannot see evidence
that another fact covers; a resample of it can still move the answer. The bench prints both rankings' hit rates
side by side, and which relations the supporting facts they miss have.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gymnasium as gym  # noqa: E402

import environments  # noqa: E402,F401
from agents.checkpoint import load_agent  # noqa: E402
from cogarch.inspect.anchors import (  # noqa: E402
    MEASURES,
    anchor_hit,
    chance_hit,
    counterfactual_importance,
    fact_pool,
    resamples,
)


def story_answer(facts, entity: str):
    """The room of ``entity`` (actor or object) after ``facts`` (word triples), by the StoryQA task 1-2 rules;
    None when the story does not tell it."""
    where, holder, dropped = {}, {}, {}
    for s, r, o in facts:
        if r == "go":
            where[s] = o
        elif r == "get":
            holder[o] = s
            dropped.pop(o, None)
        elif r == "drop":
            holder.pop(o, None)
            if s in where:
                dropped[o] = where[s]
            else:
                dropped.pop(o, None)
    if entity in holder:
        return where.get(holder[entity])
    return where.get(entity, dropped.get(entity))


class Story(NamedTuple):
    """A StoryQA episode's reading facts (env ids and words), the entity asked about, the answer and the supporting
    steps."""

    ids: list
    facts: list
    entity: str
    answer: str
    supporting: set


def read_story(env, seed: int) -> Story:
    """Episode ``seed`` of ``env`` read once; checks that story_answer re-reads the story as the env answers it
    (tasks 1 and 2)."""
    vocab = env.unwrapped.vocab
    obs, info = env.reset(seed=seed)
    ids = []
    while int(obs["phase"]) == 0:
        ids.append(tuple(int(i) for i in obs["fact"]))
        obs, _, _, _, info = env.step(int(info["oracle_action"]))
    entity, answer = vocab[int(obs["fact"][0])], vocab[int(info["oracle_action"])]
    facts = [tuple(vocab[i] for i in f) for f in ids]
    reread = story_answer(facts, entity)
    if reread != answer:
        raise AssertionError(f"seed {seed}: the re-read story answers {reread!r}, the env "
                             f"{answer!r}; the rules in story_answer no longer match the generator's")
    return Story(ids, facts, entity, answer, set(info["supporting_facts"]))


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a fraction hits / n (z = 1.96: 95%): how far the bench's fractions over a few
    dozen episodes may lie from the agent's rate over all episodes."""
    if not 0 <= hits <= n or n < 1:
        raise ValueError(f"need 0 <= hits <= n and n >= 1, got hits={hits}, n={n}")
    p, z2 = hits / n, z * z
    centre, half = (p + z2 / (2 * n)) / (1 + z2 / n), z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def each_support_necessary(story: Story) -> bool:
    """Whether leaving out any one supporting fact changes the story's answer (tasks 1 and 2)."""
    facts = story.facts
    return all(story_answer(facts[:t] + facts[t + 1:], story.entity) != story.answer for t in story.supporting)


def rules_resample_hit(story: Story, vocab, pool) -> bool:
    """Resampling for a reader that answers by the story's rules (tasks 1 and 2): each reading step ranked by the
    share of its one-role resamples (cogarch.inspect.anchors.resamples over ``pool``) that change story_answer's
    answer, ties by step; whether every supporting fact is in the top m. What the measure gives an agent that
    reasons as the generator does."""
    facts, share = story.facts, []
    for t, fact in enumerate(story.ids):
        others = [tuple(vocab[i] for i in f) for f in resamples(fact, pool)]
        changed = [story_answer(facts[:t] + [o] + facts[t + 1:], story.entity) != story.answer for o in others]
        share.append(sum(changed) / len(changed) if changed else float("-inf"))
    ranked = sorted(range(len(facts)), key=lambda t: (-share[t], t))
    return story.supporting <= set(ranked[:len(story.supporting)])


def markdown(args, result: dict, wider: dict, other: str, other_hits: dict, cycles: float, resampled: dict,
             missed_by: dict) -> str:
    """The bench's figures as a section of benchmarks/results.md."""
    n, fmt = result["episodes"], "{:.3f}".format
    lines = [f"## Thought Anchors: StoryQA task {args.task}, agent {args.agent}, {n} episodes (seeds {args.seed}.."
             f"{args.seed + n - 1})\n",
             "Counterfactual importance of each reading cycle (its broadcast suppressed, the answer distribution "
             f"compared). m = the number of supporting facts bAbI names (2 on task 2); {cycles:.1f} reading cycles "
             "per episode on average. goal: every supporting fact among the top-ranked cycles in >= 80% of the "
             "episodes.\n",
             "The last two columns resample each reading step instead (its fact replaced by each fact of the env's "
             "support that differs from it in one role; the mean answer distribution compared).\n",
             f"| episodes with every supporting fact in | suppressed, ranked by {args.measure} | suppressed, ranked "
             f"by {other} | a random ranking | resampled, ranked by {args.measure} | resampled, ranked by {other} |",
             "|---|---:|---:|---:|---:|---:|"]
    for extra, (hit_count, chance) in wider.items():
        label = "the top m" + (f" + {extra}" if extra else "")
        lines.append(f"| {label} | {fmt(hit_count / n)} | {fmt(other_hits[extra] / n)} | {fmt(chance / n)} "
                     f"| {fmt(resampled[args.measure][extra] / n)} | {fmt(resampled[other][extra] / n)} |")
    lines += ["", "Supporting facts not in the top m, by relation (ranked by " + args.measure + "):", "",
              "| intervention | " + " | ".join(sorted(set(missed_by["suppress"]) | set(missed_by["resample"])))
              + " |"]
    relations = sorted(set(missed_by["suppress"]) | set(missed_by["resample"]))
    lines.append("|---|" + "---:|" * len(relations))
    for name, counts in missed_by.items():
        lines.append(f"| {name} | " + " | ".join(str(counts.get(r, 0)) for r in relations) + " |")
    lines += ["", f"Of the drops resampling missed, {result['missed_drops_with_the_pickup_on_top']} have the same "
              "person's earlier pickup of the object in the top m instead."]
    if "rules_resampled" in result:
        lines += ["", "A reader that answers by the story's rules (the generator's), its reading steps ranked by the "
                  "share of their one-role resamples that change its answer, puts every supporting fact in the top m "
                  f"in {fmt(result['rules_resampled'])} of the same episodes."]
    lo, hi = result["anchor_fraction_interval"]
    lines += ["", "| figure | value |", "|---|---:|",
              f"| every supporting fact in the top m (suppressed, ranked by {args.measure}): 95% Wilson interval "
              f"over the {n} episodes | {fmt(lo)} to {fmt(hi)} |",
              f"| agent accuracy | {fmt(result['agent_accuracy'])} |",
              f"| every supporting fact in the top m, among the episodes answered correctly "
              f"| {fmt(result['anchor_fraction_when_correct'])} |",
              f"| at least one supporting fact in the top m | {fmt(result['any_supporting_in_top_m'])} |",
              f"| supporting facts missed (not in the top m) | {result['missed_supporting']} |",
              f"| of which another reading fact links the same subject and object "
              f"| {result['missed_with_a_redundant_fact']} |"]
    if "ceiling" in result:
        lines += [f"| episodes whose every supporting fact is necessary (the ceiling for a measure that sees only "
                  f"whether the answer changes) | {fmt(result['ceiling'])} |",
                  f"| every supporting fact in the top m, among those | "
                  f"{fmt(result['anchor_fraction_when_necessary'])} |"]
    return "\n".join(lines + ["", f"wall time: {result['wall_s']:.1f} s", ""])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default="story_qa_task2", help="a shipped checkpoint name or a train run folder")
    parser.add_argument("--task", type=int, default=2, help="StoryQA task family")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0, help="first episode seed (held out from training)")
    parser.add_argument("--measure", default="kl", choices=MEASURES, help="what ranks the cycles")
    args = parser.parse_args(argv)
    env = gym.make("cogarch/StoryQA-v0", task=args.task)
    agent = load_agent(args.agent, vocab=env.unwrapped.vocab)
    start = time.perf_counter()
    hits, correct, hits_correct, any_hit, missed, redundant, cycles = 0, 0, 0, 0, 0, 0, 0
    necessary, hits_necessary = 0, 0
    wider = {extra: [0, 0.0] for extra in (0, 1, 2)}  # m = #supporting + extra: hits, and a random ranking's expectation
    other = next(m for m in MEASURES if m != args.measure)
    other_hits = dict.fromkeys(wider, 0)  # the same, ranked by the other measure
    resampled_hits = {m: dict.fromkeys(wider, 0) for m in MEASURES}  # the same, each reading step resampled
    missed_by = {"suppress": {}, "resample": {}}  # supporting facts not in the top m, by relation
    rules_hits = 0  # tasks 1-2: resampling's top m holds every supporting fact for a reader that keeps the rules
    pickup_instead = 0  # resampling: missed drops whose same person's earlier pickup of the object is in the top m
    pool = fact_pool(env)  # the support resamples are drawn from (seeds far from the evaluated ones)
    for i in range(args.episodes):
        table = counterfactual_importance(agent, env, args.seed + i, reading_only=True, measure=args.measure)
        resampled = counterfactual_importance(agent, env, args.seed + i, reading_only=True, measure=args.measure,
                                              intervention="resample", pool=pool)
        hit = anchor_hit(table)
        n_support, n_cycles = len(table.attrs["supporting"]), len(table)
        for extra, tally in wider.items():
            tally[0] += anchor_hit(table, n_support + extra)
            tally[1] += chance_hit(n_cycles, n_support, n_support + extra)
            other_hits[extra] += anchor_hit(table, n_support + extra, by=other)
            for m in MEASURES:
                resampled_hits[m][extra] += anchor_hit(resampled, n_support + extra, by=m)
        words = dict(zip(table.step, table.fact.str.split()))
        for name, ranked in (("suppress", table), ("resample", resampled)):
            top = set(ranked.head(n_support)["step"])
            for step in set(table.attrs["supporting"]) - top:
                s, r, o = words[step]
                missed_by[name][r] = missed_by[name].get(r, 0) + 1
                if name == "resample" and r == "drop":  # is the same person's pickup of the object ranked instead?
                    pickup_instead += any(words[t] == [s, "get", o] for t in top if t < step)
        if args.task in (1, 2):
            story = read_story(env, args.seed + i)
            rules_hits += rules_resample_hit(story, env.unwrapped.vocab, pool)
            if each_support_necessary(story):
                necessary += 1
                hits_necessary += hit
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
        cycles += n_cycles
        if table.attrs["base_correct"]:
            correct += 1
            hits_correct += hit
    n = args.episodes
    result = {"episodes": n, "agent_accuracy": correct / n, "anchor_fraction": hits / n,
              "anchor_fraction_interval": wilson_interval(hits, n),
              "anchor_fraction_when_correct": hits_correct / correct if correct else float("nan"),
              "any_supporting_in_top_m": any_hit / n, "missed_supporting": missed,
              "missed_with_a_redundant_fact": redundant, "wall_s": time.perf_counter() - start}
    if args.task in (1, 2):
        result.update(ceiling=necessary / n, anchor_fraction_when_necessary=hits_necessary / max(necessary, 1),
                      rules_resampled=rules_hits / n)
    for extra, (hit_count, _) in list(wider.items())[1:]:
        result[f"anchor_fraction_m_plus_{extra}"] = hit_count / n
    result[f"by_{other}"] = {f"m_plus_{extra}": hit_count / n for extra, hit_count in other_hits.items()}
    result["resampled"] = {m: {f"m_plus_{extra}": h / n for extra, h in hits_m.items()}
                           for m, hits_m in resampled_hits.items()}
    result["missed_by_relation"], result["missed_drops_with_the_pickup_on_top"] = missed_by, pickup_instead
    print(markdown(args, result, wider, other, other_hits, cycles / n, resampled_hits, missed_by))
    return result


if __name__ == "__main__":
    main()
