"""Passkey: recall a digit key hidden at some depth in a very long stream of repeated filler text.

The passkey-retrieval test of Mohtashami & Jaggi, "Landmark Attention" (2023), used as the
needle-in-a-haystack test of Behrouz et al., "Titans" (2024). The stream is generated lazily, one
chunk at a time, so memory stays O(chunk_tokens) even for contexts of millions of tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

from environments.core import NONE, QUERY, Episode, Fact, FactStreamEnv, Question, check_range

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.".split()
# The three statements of the filler that are facts, with the index in FILLER just past each one.
STATEMENTS = ((("grass", "is", "green"), 4), (("sky", "is", "blue"), 8), (("sun", "is", "yellow"), 12))
# Indices in FILLER where a sentence starts: the key sentence goes in between two filler sentences.
BOUNDARIES = frozenset(i for i, w in enumerate(FILLER) if i == 0 or FILLER[i - 1].endswith("."))
KEY_LEN_MAX = 16
KEY_WORDS = len("The pass key digit 1 is 0.".split())  # 7: a key sentence's length in tokens
DIGITS = tuple(str(d) for d in range(10))


class PasskeyReading(Sequence):
    """The reading facts of one episode, computed on demand from (step, key position, key digits).

    The token stream is the filler cycled without end, with the key's sentences inserted. Step ``t``
    shows ``chunk`` tokens (the last step the remainder); a key step shows its key sentence inside
    filler. Nothing of size O(context) is ever stored.
    """

    def __init__(self, env: PasskeyEnv, key_step: int, key: tuple[int, ...]):
        self.env, self.key_step, self.key = env, key_step, key
        self._len = env.num_steps

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, t):
        if isinstance(t, slice):
            return [self[i] for i in range(*t.indices(self._len))]
        t = int(t)  # numpy integers too
        if t < 0:
            t += self._len
        if not 0 <= t < self._len:
            raise IndexError(f"reading step {t} out of range 0..{self._len - 1}")
        env, chunk = self.env, self.env.chunk_tokens
        words = chunk if t < self._len - 1 else env.last_tokens
        # Filler tokens streamed before step t: every earlier token except the key sentences' (a key
        # step shows min(chunk, KEY_WORDS) fewer filler words than a filler step).
        start = t * chunk - min(chunk, KEY_WORDS) * min(max(t - self.key_step, 0), len(self.key))
        j = t - self.key_step
        if not 0 <= j < len(self.key):
            if words == chunk and start + chunk >= 4:  # the common case: a cached full filler chunk
                return env.filler_facts[start % len(FILLER)]
            return env.filler_fact(start, words)
        n = max(words - KEY_WORDS, 0)  # filler tokens around the key sentence
        # Insert the key sentence at the filler sentence boundary nearest the chunk's middle.
        # (Boundaries are at most 4 words apart, so a window of +-10 words around the middle suffices.)
        near = range(max(n // 2 - 10, 0), min(n // 2 + 10, n) + 1)
        cuts = [i for i in near if (start + i) % len(FILLER) in BOUNDARIES]
        k = min(cuts, key=lambda i: abs(2 * i - n), default=n // 2)
        before = env.filler_text(start, k)
        after = env.filler_text(start + k, n - k)
        sentence = f"The pass key digit {j + 1} is {self.key[j]}."
        text = " ".join(s for s in (before, sentence, after) if s)
        return Fact(env.ids("pass_key", f"digit{j + 1}", DIGITS[self.key[j]]), text)


class PasskeyEnv(FactStreamEnv):
    """Read a long stream of filler with a digit key hidden in it; then recite the key, digit by digit.

    ## Description

    Passkey retrieval from Mohtashami & Jaggi, "Landmark Attention" (2023), the needle-in-a-haystack
    test of Behrouz et al., "Titans" (2024). The classic filler "The grass is green. The sky is blue.
    The sun is yellow. Here we go. There and back again." repeats for ``context_tokens`` whitespace-
    separated words, streamed ``chunk_tokens`` words per step. At a depth drawn uniformly (or fixed by
    ``depth``), ``key_len`` consecutive steps each embed one sentence "The pass key digit j is d." in
    their filler. After the stream come ``key_len`` questions "What is digit j of the pass key?", one
    answer step each.

    The reading facts are computed per step (``Episode.reading`` is a lazy sequence), so memory is
    O(chunk_tokens) for any context length, e.g. 1,000,000 tokens or more.

    ## Action Space

    ``Discrete(V)``, ``V = 36``: ``<none>``, ``?``, the digits ``"0".."9"``, ``pass_key``,
    ``digit1..digit16``, then the filler symbols ``grass, sky, sun, is, green, blue, yellow``. The
    vocabulary does not depend on the arguments. Action 0 (``<none>``) is expected while reading.

    ## Observation Space

    ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))``. The text of a reading step
    is its chunk of words. A key step's fact is ``(pass_key, digit{j}, d_j)``. A filler step's fact is
    the filler statement — ``(grass, is, green)``, ``(sky, is, blue)`` or ``(sun, is, yellow)`` — most
    recently completed in the stream by the end of the step (the first one before any is complete); it
    lies inside the step's text whenever ``chunk_tokens >= 22``. Question ``j`` shows
    ``(pass_key, digit{j}, ?)``, text "What is digit j of the pass key?".

    ## Rewards

    1 for each correct digit while answering, else 0. Reading steps pay 0.

    ## Episode End

    Terminates after the last digit; never truncates. ``info["success"]`` is true when every digit was
    right (a uniformly random agent: ``V ** -key_len``; random digits: ``0.1 ** key_len``).
    ``reset``'s ``info`` holds ``context_tokens``, ``chunk_tokens``, ``key_len``, ``num_steps`` (reading
    steps), ``key_step`` (the reading index of the first key step) and ``depth`` (``key_step`` as a
    fraction of the possible range: 0.0 first steps, 1.0 last steps).

    ## Arguments

    - ``key_len`` (int, default 5): digits in the key, ``1..16``.
    - ``context_tokens`` (int, default 1024): words in the whole stream,
      ``chunk_tokens * (key_len + 1) .. 10**12``. There are ``ceil(context_tokens / chunk_tokens)``
      reading steps; each shows ``chunk_tokens`` words except the last, which shows the remainder. A
      key step whose share is under 7 words shows just its 7-word key sentence.
    - ``chunk_tokens`` (int, default 64): words per reading step, ``1..4096``.
    - ``depth`` (float or None, default None): where the key sits, ``0.0`` (first steps) ``..1.0``
      (last steps); ``None`` draws the key's first step uniformly each episode.
    - ``render_mode`` (str or None, default None): ``None`` or ``"ansi"``.
    """

    def __init__(
        self,
        key_len: int = 5,
        context_tokens: int = 1024,
        chunk_tokens: int = 64,
        depth: float | None = None,
        render_mode: str | None = None,
    ):
        check_range("key_len", key_len, 1, KEY_LEN_MAX, integer=True)
        check_range("chunk_tokens", chunk_tokens, 1, 4096, integer=True)
        # At least one filler step besides the key's, so there is a haystack to hide the key in.
        check_range("context_tokens", context_tokens, chunk_tokens * (key_len + 1), 10**12, integer=True)
        if depth is not None:
            check_range("depth", depth, 0.0, 1.0)
        self.key_len, self.chunk_tokens = int(key_len), int(chunk_tokens)
        self.context_tokens, self.depth = int(context_tokens), None if depth is None else float(depth)
        self.num_steps = -(-self.context_tokens // self.chunk_tokens)
        self.last_tokens = self.context_tokens - (self.num_steps - 1) * self.chunk_tokens

        vocab = (
            NONE, QUERY, *DIGITS, "pass_key", *(f"digit{j}" for j in range(1, KEY_LEN_MAX + 1)),
            "grass", "sky", "sun", "is", "green", "blue", "yellow",
        )  # fmt: skip
        longest = max(len(w) for w in FILLER)
        key_sentence = len(f"The pass key digit {KEY_LEN_MAX} is 0.")
        question = len(f"What is digit {KEY_LEN_MAX} of the pass key?")
        max_text = max(self.chunk_tokens * (longest + 1) + key_sentence, question)
        super().__init__(vocab, max_text_length=max_text, render_mode=render_mode)

        # A cycle of filler repeated past any chunk's length, so a chunk's text is one slice and join.
        self._cycle = FILLER * (self.chunk_tokens // len(FILLER) + 2)
        # Full filler chunks repeat with period len(FILLER): cache one Fact per phase of the cycle.
        self.filler_facts = tuple(self.filler_fact(len(FILLER) + p, self.chunk_tokens) for p in range(len(FILLER)))

    def filler_text(self, start: int, n: int) -> str:
        """Filler words ``start .. start + n - 1`` of the endless filler stream."""
        p = start % len(FILLER)
        return " ".join(self._cycle[p : p + n])

    def filler_fact(self, start: int, n: int) -> Fact:
        """The filler step showing words ``start .. start + n - 1``; its fact is the last statement done."""
        end = start + n
        phase, fact = end % len(FILLER), STATEMENTS[0][0] if end < len(FILLER) else STATEMENTS[-1][0]
        for names, stop in STATEMENTS:
            if phase >= stop:
                fact = names
        return Fact(self.ids(*fact), self.filler_text(start, n))

    def _generate(self) -> Episode:
        rng = self.np_random
        key = tuple(int(d) for d in rng.integers(0, 10, size=self.key_len))
        span = self.num_steps - self.key_len  # the key's first step is one of 0..span
        if self.depth is None:
            key_step = int(rng.integers(0, span + 1))
        else:
            key_step = round(self.depth * span)
        query, pass_key = self.index[QUERY], self.index["pass_key"]
        questions = [
            Question(
                ids=(pass_key, self.index[f"digit{j + 1}"], query),
                text=f"What is digit {j + 1} of the pass key?",
                answer=(self.index[DIGITS[d]],),
                supporting=(key_step + j,),
            )
            for j, d in enumerate(key)
        ]
        info = {
            "context_tokens": self.context_tokens,
            "chunk_tokens": self.chunk_tokens,
            "key_len": self.key_len,
            "num_steps": self.num_steps,
            "key_step": key_step,
            "depth": key_step / span,
        }
        return Episode(reading=PasskeyReading(self, key_step, key), questions=questions, info=info)
