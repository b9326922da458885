"""Scene-graph question answering: objects, attributes and relations streamed as SPO triples, then one
multi-hop question whose every hop is answered and scored.

Scenes come from a small built-in ontology (Visual Genome-like categories, attributes and typed
relations), so "the man is riding the horse" and "the horse is pulling the cart" occur, but never "the
cup is riding the tree".
"""

from __future__ import annotations

from environments.core import NONE, QUERY, Episode, Fact, FactStreamEnv, Question, check_range

# ---------------------------------------------------------------- the ontology
# Category -> (kind, the attribute values it may take). A value's family is fixed (VALUE_FAMILY), so
# "The cart is wooden." names its family without saying it.
CATEGORIES = {
    "man": ("person", "tall short"),
    "woman": ("person", "tall short"),
    "boy": ("person", "tall short"),
    "girl": ("person", "tall short"),
    "horse": ("animal", "brown white black gray small large"),
    "dog": ("animal", "brown white black small large"),
    "cat": ("animal", "white black gray brown small large"),
    "cow": ("animal", "brown white black small large"),
    "elephant": ("animal", "gray small large"),
    "car": ("vehicle", "red blue white black gray small large metal"),
    "bike": ("vehicle", "red blue green black small large metal"),
    "bus": ("vehicle", "red blue yellow white small large metal"),
    "carriage": ("vehicle", "black brown red small large wooden metal"),
    "cart": ("vehicle", "brown gray small large wooden metal"),
    "shirt": ("clothing", "red blue green yellow white black small large"),
    "hat": ("clothing", "red blue black white brown small large leather"),
    "jacket": ("clothing", "blue black brown gray small large leather"),
    "helmet": ("clothing", "red blue white black metal plastic"),
    "ball": ("item", "red blue green yellow white small large plastic leather"),
    "cup": ("item", "red blue white yellow small large plastic metal"),
    "umbrella": ("item", "red blue black yellow small large"),
    "bag": ("item", "red black brown small large leather plastic"),
    "book": ("item", "red blue green small large"),
    "phone": ("item", "black white gray metal plastic"),
    "table": ("furniture", "white brown black small large wooden metal plastic"),
    "bench": ("furniture", "brown green gray small large wooden metal"),
    "chair": ("furniture", "white brown black red small large wooden metal plastic"),
    "street": ("place", "gray black"),
    "tree": ("place", "green brown tall short"),
    "building": ("place", "white gray red brown tall short"),
    "fence": ("place", "white brown gray wooden metal"),
    "grass": ("place", "green brown"),
}
FAMILIES = {
    "colour": ("red", "blue", "green", "yellow", "white", "black", "gray", "brown"),
    "size": ("small", "large", "tall", "short"),
    "material": ("wooden", "metal", "plastic", "leather"),
}
VALUE_FAMILY = {v: f for f, values in FAMILIES.items() for v in values}


def _group(spec: str) -> frozenset[str]:
    """Categories named by ``spec``: kinds and category names separated by spaces."""
    words = spec.split()
    return frozenset(c for c, (kind, _) in CATEGORIES.items() if kind in words or c in words)


# Relation -> (the phrase after "is", typing rules [(subjects, objects)] in _group's words). Relations
# are asymmetric and typed so that no stated fact implies another: no "next to"; no category is both a
# subject and an object of "on", "under" or "behind", so they never chain. The stated triples are then
# the whole truth about the scene, and a question's answer follows from them alone.
RELATIONS = {
    "riding": ("riding", [("person", "horse elephant bike bus carriage cart")]),
    "pulls": ("pulling", [("horse cow dog elephant", "carriage cart")]),
    "wearing": ("wearing", [("person", "clothing")]),
    "holding": ("holding", [("person", "item")]),
    "chasing": ("chasing", [("dog cat", "person cat ball")]),
    "on": (
        "on",
        [
            ("item clothing cat", "furniture street grass"),
            ("person dog", "bench chair street grass"),
            ("horse cow elephant", "street grass"),
        ],
    ),
    "parked_on": ("parked on", [("vehicle", "street grass")]),
    "under": ("under", [("person animal bike", "tree"), ("dog cat item", "table bench chair")]),
    "behind": ("behind", [("person animal", "vehicle tree building fence")]),
}
PHRASE = {r: phrase for r, (phrase, _) in RELATIONS.items()}


# Question templates. S is the subject's noun phrase ("the man", "it", "the thing that ..."), O the
# object's; P the relation's phrase, V an attribute value.
FACT_REL, FACT_ATTR = "The {S} is {P} the {O}.", "The {S} is {V}."
ASK_OBJECT, ASK_SUBJECT, ASK_ATTR = "What is {S} {P}?", "What is {P} {O}?", "What {F} is {S}?"
IS_REL, IS_ATTR = "Is {S} {P} {O}?", "Is {S} {V}?"
# Noun phrases for a hop's answer, nested into the next hop's question.
NP_OBJECT, NP_SUBJECT = "the thing that {S} is {P}", "the thing that is {P} {O}"
FINALS = ("attribute", "relation")  # what the last hop asks for; either may be a yes/no check instead
MAX_HOPS = 3


class SceneGraphQAEnv(FactStreamEnv):
    """A Visual Genome-style scene graph streamed as triples, then a 1-3 hop question, one step per hop.

    ## Description

    Scene graphs as in Visual Genome (Krishna et al., 2017): objects, their attributes and the
    relations between them, all subject-predicate-object triples; decoding such triples one symbol at a
    time follows the Tensor Brain (Tresp et al.). A scene holds ``num_objects`` distinct categories (so a
    category symbol names one object) drawn from a 32-category ontology, each with 1-2 attribute facts
    (colour, size, material), and ``num_relations`` typed relations (riding, pulls, wearing, holding,
    chasing, on, parked_on, under, behind) between distinct pairs; the scene is grown so that its
    related objects form one connected graph.

    A k-hop question walks a chain from an anchor object: hops 1..k-1 cross relations (forward, "what
    is the man riding?", or backward, "what is pulling the cart?"), hop k asks for an attribute or
    crosses one more relation (each half the time). Every hop's answer is unique in the scene and
    never revisits the chain; intermediate answers stay unnamed in the text ("the thing that ...").
    With probability ``p_verify`` the last hop is a yes/no check instead ("Is it brown?", "Is it riding
    the horse?"), true or false with equal odds; false statements are plausible (the same family, an
    allowed relation) and false because they are not stated (closed world).

    ## Action Space

    ``Discrete(V)`` over ``env.unwrapped.vocab``: ``<none> ? yes no it``, the 32 categories, the relations
    and attribute families ``colour size material``, then the attribute values. While reading, the
    expected action is 0 (``<none>``); then one answer symbol per hop.

    ## Observation Space

    ``Dict(fact=MultiDiscrete([V, V, V]), text=Text, phase=Discrete(2))``. Reading facts, in random
    order: ``(man, riding, horse)`` "The man is riding the horse.", ``(carriage, colour, red)`` "The
    carriage is red.". Hop 1 is ``(anchor, rel, ?)`` or ``(?, rel, anchor)`` (or ``(anchor, colour, ?)``);
    later hops name the previous answer ``it``: ``(it, colour, ?)``, ``(?, pulls, it)``. Hop 1's text is
    the whole question ("What colour is the thing that is pulling the thing that the man is riding?"),
    later hops' texts ask that hop alone ("What is pulling it?", "What colour is it?"). A yes/no hop
    shows the statement checked: ``(it, colour, brown)`` "Is it brown?".

    ## Rewards

    0 while reading; 1 per correct hop answer, else 0.

    ## Starting State

    Drawn from ``np_random``. ``reset`` info adds ``hops``, ``final`` ("attribute" or "relation"),
    ``verify`` (bool), and ``chain``: the ``[subject, relation, object]`` names of each hop's fact (for a
    yes/no hop, the statement checked).

    ## Episode End

    Terminates after the last hop's answer; never truncates. ``info["success"]``: every hop correct.

    ## Arguments

    - ``num_objects`` (int, default 8): objects in the scene, 3 <= num_objects <= 20.
    - ``num_relations`` (int, default 8): relation facts, max(1, k - 1) <= num_relations <= min(2n - 2,
      n(n - 1)/2 - 1), with n = ``num_objects`` and k = ``hops`` if given, else ``max_hops``. A k-hop
      question ends on a relation only when num_relations >= k and num_objects > k (else on an attribute).
    - ``max_hops`` (int, default 3): 1 <= max_hops <= 3; with ``hops=None`` k is uniform on 1..max_hops.
    - ``hops`` (int or None, default None): a fixed hop count, 1 <= hops <= max_hops.
    - ``p_verify`` (float, default 0.2): 0 <= p_verify <= 1, the chance the last hop is a yes/no check.
    - ``render_mode`` (str or None, default None): None or ``"ansi"``.
    """

    def __init__(
        self,
        num_objects: int = 8,
        num_relations: int = 8,
        max_hops: int = 3,
        hops: int | None = None,
        p_verify: float = 0.2,
        render_mode: str | None = None,
    ):
        check_range("num_objects", num_objects, 3, 20, integer=True)
        check_range("max_hops", max_hops, 1, MAX_HOPS, integer=True)
        if hops is not None:
            check_range("hops", hops, 1, max_hops, integer=True)
        # A k-hop chain crosses k - 1 relations before its last hop; more than ~2 relations per object
        # (or every pair of a tiny scene) rarely fits the typed pairs.
        most = min(2 * num_objects - 2, num_objects * (num_objects - 1) // 2 - 1)
        check_range("num_relations", num_relations, max(1, (hops or max_hops) - 1), most, integer=True)
        check_range("p_verify", p_verify, 0.0, 1.0)
        self.num_objects, self.num_relations = int(num_objects), int(num_relations)
        self.max_hops, self.p_verify = int(max_hops), float(p_verify)
        self.hops = None if hops is None else int(hops)

        cats, values = tuple(CATEGORIES), tuple(VALUE_FAMILY)
        vocab = (NONE, QUERY, "yes", "no", "it") + cats + tuple(RELATIONS) + tuple(FAMILIES) + values
        self._cats = cats
        rules = {r: [(_group(s), _group(o)) for s, o in spec] for r, (_, spec) in RELATIONS.items()}
        # Allowed relations of each ordered category pair; neighbours in either direction, for growing.
        self._allowed = {
            (a, b): tuple(r for r, pairs in rules.items() if any(a in s and b in o for s, o in pairs))
            for a in cats
            for b in cats
            if a != b
        }
        self._neighbours = {
            a: tuple(b for b in cats if b != a and (self._allowed[a, b] or self._allowed[b, a])) for a in cats
        }
        self._values = {c: tuple(vals.split()) for c, (_, vals) in CATEGORIES.items()}
        self._families = {c: tuple(dict.fromkeys(map(VALUE_FAMILY.get, v))) for c, v in self._values.items()}
        super().__init__(vocab, self._text_bound(), render_mode)

    def _text_bound(self) -> int:
        """An upper bound on every sentence's length, from the templates' lengths."""
        noun = len("the ") + max(map(len, CATEGORIES))
        phrase = max(map(len, PHRASE.values()))
        word = max(map(len, (*VALUE_FAMILY, *FAMILIES)))
        clause = max(len(t) for t in (NP_OBJECT, NP_SUBJECT)) - 6 + phrase  # the text around S/O
        longest_np = noun + (self.max_hops - 1) * clause
        final = max(len(t) for t in (ASK_OBJECT, ASK_SUBJECT, ASK_ATTR, IS_REL, IS_ATTR, FACT_REL)) - 6
        return final + phrase + longest_np + noun + word  # one nested phrase, one plain noun

    # ---------------------------------------------------------------- scene
    def _scene(self, rng):
        """Sample categories, attributes and relations; None when the typed pairs cannot hold them all."""
        n, m = self.num_objects, self.num_relations
        cats = self._cats
        # Grow a tree: each new object relates to one already placed, so relations form a connected
        # graph; objects past the tree's size (when m < n - 1) join unrelated.
        first = cats[int(rng.integers(len(cats)))]
        objects, edges = [first], []
        used = {first}
        draws = rng.random(2 * n).tolist()
        for i in range(1, n):
            if i <= m:
                hub = objects[int(draws[2 * i] * len(objects))]
                options = [b for b in self._neighbours[hub] if b not in used]
                if not options:
                    return None
                new = options[int(draws[2 * i + 1] * len(options))]
                edges.append((hub, new))
            else:
                options = [c for c in cats if c not in used]
                new = options[int(draws[2 * i + 1] * len(options))]
            objects.append(new)
            used.add(new)
        if m > len(edges):  # extra relations between other related pairs
            tree = {frozenset(e) for e in edges}
            related = objects[: len(edges) + 1]
            extra = [
                (a, b)
                for i, a in enumerate(related)
                for b in related[i + 1 :]
                if frozenset((a, b)) not in tree and (self._allowed[a, b] or self._allowed[b, a])
            ]
            if len(extra) < m - len(edges):
                return None
            pick = rng.choice(len(extra), size=m - len(edges), replace=False).tolist()
            edges += [extra[j] for j in pick]
        relations = []
        for a, b in edges:  # one relation per pair, in an allowed direction
            options = [(a, r, b) for r in self._allowed[a, b]] + [(b, r, a) for r in self._allowed[b, a]]
            relations.append(options[int(rng.integers(len(options)))])
        attributes = []
        for c in objects:
            families = self._families[c]
            k = 1 if len(families) == 1 else int(rng.integers(1, 3))
            for f in rng.permutation(len(families))[:k].tolist():
                vals = [v for v in self._values[c] if VALUE_FAMILY[v] == families[f]]
                attributes.append((c, families[f], vals[int(rng.integers(len(vals)))]))
        return objects, attributes, relations

    # ---------------------------------------------------------------- question
    def _question(self, rng, objects, attributes, relations, k, final, verify):
        """A chain of k unique hops as (subject, relation, object, direction) with direction "out" (the
        object is the answer), "in" (the subject is) or "attr"; None if this scene has no such chain."""
        out, inc = {}, {}  # out[(s, r)] = objects, inc[(o, r)] = subjects
        for s, r, o in relations:
            out.setdefault((s, r), []).append(o)
            inc.setdefault((o, r), []).append(s)
        hops_out = {}  # entity -> unique hops leaving it
        for (s, r), os in out.items():
            if len(os) == 1:
                hops_out.setdefault(s, []).append((s, r, os[0], "out"))
        for (o, r), ss in inc.items():
            if len(ss) == 1:
                hops_out.setdefault(o, []).append((ss[0], r, o, "in"))
        attrs = {}
        for c, f, v in attributes:
            attrs.setdefault(c, []).append((c, f, v, "attr"))
        n_rel = k - 1 + (final == "relation" and not verify)
        for _ in range(8):  # anchors to try
            node = objects[int(rng.integers(len(objects)))]
            chain, seen = [], {node}
            for _ in range(n_rel):
                options = [h for h in hops_out.get(node, ()) if (h[2] if h[3] == "out" else h[0]) not in seen]
                if not options:
                    break
                hop = options[int(rng.integers(len(options)))]
                node = hop[2] if hop[3] == "out" else hop[0]
                chain.append(hop)
                seen.add(node)
            if len(chain) < n_rel:
                continue
            if not verify:
                if final == "attribute":
                    options = attrs[node]
                    chain.append(options[int(rng.integers(len(options)))])
                return chain, None
            answer = "yes" if rng.random() < 0.5 else "no"
            statement = self._statement(rng, node, seen, final, answer, attrs, objects, relations)
            if statement is not None:
                return chain + [statement], answer
        return None

    def _statement(self, rng, node, seen, final, answer, attrs, objects, relations):
        """A true or false statement about ``node`` for a yes/no hop (None if none fits)."""
        if final == "attribute":
            c, f, v, _ = attrs[node][int(rng.integers(len(attrs[node])))]
            if answer == "yes":
                return (c, f, v, "attr")
            others = [w for w in self._values[c] if VALUE_FAMILY[w] == f and w != v]
            others = others or [w for w in FAMILIES[f] if w != v]
            return (c, f, others[int(rng.integers(len(others)))], "attr")
        off_chain = [x for x in objects if x not in seen]
        pairs = [(node, x) for x in off_chain] + [(x, node) for x in off_chain]
        if answer == "yes":  # a stated relation between node and an object off the chain
            pairs = set(pairs)
            options = [(s, r, o) for s, r, o in relations if (s, o) in pairs]
        else:  # an allowed but unstated one
            stated = set(relations)
            options = [(s, r, o) for s, o in pairs for r in self._allowed[s, o] if (s, r, o) not in stated]
        if not options:
            return None
        s, r, o = options[int(rng.integers(len(options)))]
        return (s, r, o, "out" if s == node else "in")

    # ---------------------------------------------------------------- episode
    def _generate(self) -> Episode:
        rng = self.np_random
        # Draw the question's shape once, then scenes until one holds it: k stays uniform.
        k = self.hops if self.hops is not None else int(rng.integers(1, self.max_hops + 1))
        final = FINALS[int(rng.integers(2))]
        if self.num_relations < k or self.num_objects <= k:
            final = "attribute"  # a relation as the last hop needs k relations along k + 1 objects
        verify = bool(rng.random() < self.p_verify)
        for _ in range(1000):
            scene = self._scene(rng)
            found = scene and self._question(rng, *scene, k, final, verify)
            if found:
                break
        else:
            raise RuntimeError(f"no {k}-hop {final} question fits 1000 scenes; raise num_relations")
        objects, attributes, relations = scene
        chain, yes_no = found

        facts = [(s, r, o, FACT_REL.format(S=s, P=PHRASE[r], O=o)) for s, r, o in relations]
        facts += [(c, f, v, FACT_ATTR.format(S=c, V=v)) for c, f, v in attributes]
        order = rng.permutation(len(facts)).tolist()
        reading = [Fact(self.ids(*facts[i][:3]), facts[i][3]) for i in order]
        where = {facts[i][:3]: t for t, i in enumerate(order)}
        value_of = {(c, f): v for c, f, v in attributes}

        # Each hop is asked twice over: alone about "it" (its own step's text) and with the chain so far
        # spelled out as a noun phrase; the last hop's spelled-out text is the whole question.
        steps, support = [], []
        noun = "the " + (chain[0][2] if chain[0][3] == "in" else chain[0][0])
        for h, (s, r, o, d) in enumerate(chain):
            check = yes_no is not None and h == len(chain) - 1
            if d == "attr":  # a "no" is supported by the value actually stated
                support.append(where[s, r, value_of[s, r]])
            elif (s, r, o) in where:  # a false relation has no fact: nothing is stated (closed world)
                support.append(where[s, r, o])
            subj, obj = ("it" if h else s), ("it" if h else o)
            p = PHRASE[r] if d != "attr" else None
            if d == "attr":
                ids, answer = (subj, r, o if check else QUERY), (yes_no if check else o)
                texts = [(IS_ATTR if check else ASK_ATTR).format(S=x, V=o, F=r) for x in ("it", noun)]
            elif check:
                ids, answer = ((subj, r, o) if d == "out" else (s, r, obj)), yes_no
                pairs = [(x, f"the {o}") if d == "out" else (f"the {s}", x) for x in ("it", noun)]
                texts = [IS_REL.format(S=x, P=p, O=y) for x, y in pairs]
            elif d == "out":
                ids, answer = (subj, r, QUERY), o
                texts = [ASK_OBJECT.format(S=x, P=p) for x in ("it", noun)]
                noun = NP_OBJECT.format(S=noun, P=p)
            else:
                ids, answer = (QUERY, r, obj), s
                texts = [ASK_SUBJECT.format(P=p, O=x) for x in ("it", noun)]
                noun = NP_SUBJECT.format(P=p, O=noun)
            steps.append([self.ids(*ids), texts[0], (self.index[answer],), tuple(support)])
        steps[0][1] = texts[1]
        questions = [Question(ids, text, answer, supporting=sup) for ids, text, answer, sup in steps]
        info = {
            "hops": len(chain),
            "final": "attribute" if chain[-1][3] == "attr" else "relation",
            "verify": yes_no is not None,
            "chain": [list(c[:3]) for c in chain],
        }
        return Episode(reading, questions, info)
