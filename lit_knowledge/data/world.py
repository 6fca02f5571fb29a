"""The synthetic world: a seeded, deterministic fictional world for the embedded default.

People have a birth city, a birth year, an employer and a field; organisations have a headquarters
city. Everything is drawn from fixed word lists, so a word-level tokenizer covers every name, while
the *combinations* (which person was born where, works for whom) are fresh: a model can only answer
about a new person by reading about them, or by having the fact put into its weights.

What the world provides:
- background people and organisations, known to the reader before the stream (locality probes);
- a knowledge stream: steps of documents about new people, each with probes whose wording is held
  out from the documents, of several kinds: `efficacy` (direct question), `paraphrase` (another
  wording), `transformed` (the answer in another form than the document states it: the decade),
  `inverse` (who was born in X in Y?), `compositional` (two facts of one person in one answer),
  `multi_hop` (through the employer to its headquarters: background knowledge);
- facts that change at later steps (a person moves to another employer), superseding earlier probes;
- counterfactual edits about background people, with paraphrases, locality prompts and two-hop
  portability questions;
- the reader's pretraining mix: background facts (closed-book) and reading comprehension over freshly
  generated people (never a fixed pool), so that the only way to answer is to read the context.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from lit_knowledge.data.prompts import answered_turns
from lit_knowledge.data.records import Document, Edit, Probe
from lit_knowledge.data.sources import SOURCES
from lit_knowledge.data.streams import EditStream, KnowledgeStream, StreamStep
from lit_knowledge.errors import UserError

FIRST_NAMES = (
    "ada alma anton arlo basil bea cato cleo dara dov edda elio emil esme fenn flora gus hana ines ivo jana jory "
    "kai kira lars lena lior maja milo nadia nils odile otto pia quin rafa rosa sami tavi tess udo una vera viggo "
    "wren yara yuri zane zora bram cyra dagny ezra fabio greta hugo ilse joss kasia luca mira nico oren perla "
    "remy saskia teo ulla vito wanda xander yusuf zelda"
).split()
LAST_NAMES = (
    "abbott arden barlow brandt calder corwin dalton dresner ellery fairbanks falk garrow halden hartwell ingram "
    "jessup kessler lindqvist marlow mercer norcott oakes pelham quarry radley selwyn stroud thorne tulliver "
    "underhill vance voss whitlock wexford yardley zeller achterberg bellamy castellan drummond eastwood "
    "fontaine gaskell hollis iverson jarrett kimball lachance moreau nakamura okafor petrakis rasmussen "
    "salazar takeda ueda varga winslow yilmaz zamora"
).split()
CITIES = (
    "velmora ostrava kelthorn dunmere brisk anvora caldera marenport tessaly glimhold ravensby solmere "
    "quarrow fenwick lowmarsh eddington pellucid harrowgate zinnia tarquin vesper arkholm bellhaven cindral "
    "drossel emberly farrowdale gantry hollin islay"
).split()
ORG_FIRST = "norcrest aldous brightwater copperline deepfield emberline frostvale greyhall ironwood juniper".split()
ORG_LAST = "labs institute foundry works collective systems group".split()
FIELDS = (
    "chemistry law astronomy geology linguistics botany robotics economics medicine architecture music "
    "zoology philosophy mathematics cartography"
).split()
YEARS = list(range(1940, 2000))

# Documents state facts with these templates; questions below never reuse their wording.
DOC_TEMPLATES = (
    "{name} was born in {year} in {city} . {name} works for {org} as a researcher in {field} .",
    "born in {city} in {year} , {name} is a {field} specialist employed by {org} .",
    "{org} employs {name} , who studies {field} . {name} was born in {year} in the city of {city} .",
    "the {field} expert {name} came into the world in {city} in {year} and now works at {org} .",
    "{name} , a native of {city} born in {year} , does {field} research at {org} .",
)
ORG_DOC_TEMPLATES = (
    "{org} is based in {hq} .",
    "the headquarters of {org} are in {hq} .",
)
CHANGE_TEMPLATES = (
    "{name} left {old_org} and joined {org} .",
    "after years at {old_org} , {name} moved to {org} .",
)

# Question templates per relation: the first `PROBE_SPLIT` wordings are training questions (pretraining
# and the target sets of SELF-PARAM / FT(S)); the rest are held out and only used by probes.
QUESTIONS = {
    "city": ("where was {name} born ?", "what is the birthplace of {name} ?", "in which city was {name} born ?",
             "which city is the hometown of {name} ?"),
    "year": ("when was {name} born ?", "what is the birth year of {name} ?", "in what year was {name} born ?",
             "which year did {name} arrive in the world ?"),
    "org": ("who employs {name} ?", "where does {name} work ?", "which organisation does {name} work for ?",
            "who is the employer of {name} ?"),
    "field": ("what does {name} study ?", "what is the field of {name} ?", "what is the area of expertise of {name} ?",
              "in which discipline does {name} work ?"),
}
PROBE_SPLIT = 2
STREAM_POOL = 1000  # names reserved for stream people
MIN_FRESH = 2000  # names left for freshly drawn people (reading practice, held-out text)
TRANSFORMED = ("in which decade was {name} born ?", "during which decade was {name} born ?")
INVERSE = ("who was born in {city} in {year} ?", "which person was born in {year} in {city} ?")
COMPOSITIONAL = ("where and in what year was {name} born ?", "in which city and year was {name} born ?")
MULTI_HOP = ("in which city is the employer of {name} based ?", "where is the organisation that employs {name} based ?")
ORG_QUESTIONS = ("where is {org} based ?", "in which city are the headquarters of {org} ?")
# The facts each derived kind of question needs (a direct question, efficacy or paraphrase, needs its own relation).
DIRECT = ("efficacy", "paraphrase")
DERIVED_RELATIONS = {"transformed": ("year",), "inverse": ("city", "year"), "compositional": ("city", "year"),
                     "multi_hop": ("org",)}
RELATIONS = tuple(QUESTIONS)
NAME_PARTS = ("first", "last")
# Edit prompts are questions too (the reader answers questions); these relations can be edited.
EDIT_RELATIONS = ("city", "org", "field")


def name_part(name: str, part: str) -> str:
    """A person's first or last name: the first or the last word of the whole name."""
    words = name.split()
    return words[0] if part == "first" else words[-1]


@dataclass
class Person:
    name: str
    city: str
    year: int
    org: str
    field: str


def direct_relation(kind: str, relation: str) -> str:
    """A probe's `relation`: the fact a direct question asks; "" for a derived one, whose answer is of another form
    (a decade, a name, an employer's city), so that F1 by fact compares like with like."""
    return relation if kind in DIRECT else ""


def decade(year: int) -> str:
    return f"{year // 10 * 10}s"


def answer(person: Person, relation: str) -> str:
    return str(getattr(person, relation))


class World:
    """All of the world's facts, drawn once from `seed`; every method of it is deterministic."""

    def __init__(self, cfg):
        # A plain dataclass, not the OmegaConf node: its attributes are read for every example drawn.
        self.cfg = cfg = OmegaConf.to_object(cfg) if isinstance(cfg, DictConfig) else cfg
        rng = random.Random(cfg.seed)
        orgs = [f"{a} {b}" for a in ORG_FIRST for b in ORG_LAST]
        rng.shuffle(orgs)
        if cfg.num_organisations > len(orgs):
            raise ValueError(f"data.world.num_organisations must be <= {len(orgs)}")
        self.orgs = orgs[: cfg.num_organisations]
        self.hq = {org: rng.choice(CITIES) for org in self.orgs}
        names = [f"{a} {b}" for a in FIRST_NAMES for b in LAST_NAMES]
        rng.shuffle(names)
        n_stream = cfg.num_steps * cfg.entities_per_step
        if n_stream > STREAM_POOL:
            raise UserError(f"data.world.num_steps x entities_per_step = {n_stream} people; the world has names for "
                            f"{STREAM_POOL} stream people: lower one of them")
        if cfg.num_background + STREAM_POOL + MIN_FRESH > len(names):
            raise UserError(f"data.world.num_background={cfg.num_background} leaves too few fresh names for reading "
                            f"practice; keep it <= {len(names) - STREAM_POOL - MIN_FRESH}")
        # Names: background people first, then a fixed pool for stream people, then the rest, from which
        # reading comprehension and held-out text draw fresh people. The pool's size does not depend on the
        # stream's length, so one pretrained reader serves every stream of the same background.
        self.background = [self._person(rng, n) for n in names[: cfg.num_background]]
        self.stream_people = [self._person(rng, n) for n in names[cfg.num_background : cfg.num_background + n_stream]]
        self.free_names = names[cfg.num_background + STREAM_POOL :]
        self._stream_rng_seed = rng.randrange(2**31)
        if cfg.stream_seed:
            # A dev stream: other people of the stream pool (never the test stream's), with facts and a stream
            # order of their own. The background, the free names and so the reader are the same.
            dev = random.Random(cfg.seed + 15485863 * cfg.stream_seed)
            pool = names[cfg.num_background + n_stream : cfg.num_background + STREAM_POOL]
            if len(pool) < n_stream:
                raise UserError(f"data.world.stream_seed={cfg.stream_seed}: the stream pool has {len(pool)} names "
                                f"besides the test stream's, fewer than the {n_stream} a stream needs")
            self.stream_people = [self._person(dev, n) for n in dev.sample(pool, n_stream)]
            self._stream_rng_seed = dev.randrange(2**31)

    def _person(self, rng: random.Random, name: str) -> Person:
        return Person(name, rng.choice(CITIES), rng.choice(YEARS), rng.choice(self.orgs), rng.choice(FIELDS))

    @functools.cached_property
    def _free_names_by(self) -> dict[str, dict[str, list[str]]]:
        """The free names by their first name and by their last name."""
        out: dict[str, dict[str, list[str]]] = {part: {} for part in NAME_PARTS}
        for name in self.free_names:
            for part in NAME_PARTS:
                out[part].setdefault(name_part(name, part), []).append(name)
        return out

    def fresh_person(self, rng: random.Random) -> Person:
        return self._person(rng, rng.choice(self.free_names))

    def fresh_people_sharing_names(self, rng: random.Random, count: int, shared_share: float) -> list[Person]:
        """`count` fresh people, about `shared_share` of them in pairs that share a first or a last name (telling
        the two apart needs the whole name), the rest drawn as `fresh_person` draws; in a random order."""
        pairs = min(count // 2, round(count * shared_share / 2))
        names = []
        for _ in range(pairs):
            name = rng.choice(self.free_names)
            part = rng.choice(NAME_PARTS)  # which of the two names the pair shares
            word = name_part(name, part)
            namesakes = [n for n in self._free_names_by[part][word] if n != name]
            if not namesakes:  # never with the world's name lists (every first and last name recurs)
                raise UserError(f"no other free name shares the {part} name {word!r}: lower train_shared_names")
            names += [name, rng.choice(namesakes)]
        names += [rng.choice(self.free_names) for _ in range(count - len(names))]
        rng.shuffle(names)
        return [self._person(rng, n) for n in names]

    # ------------------------------------------------------------------------------------- rendering

    def document(self, person: Person, rng: random.Random) -> str:
        return rng.choice(DOC_TEMPLATES).format(**vars(person))

    def questions(self, person: Person, split: str = "all", known: list[Person] = (), derived: bool = True,
                  relations=RELATIONS) -> list[tuple[str, str, str]]:
        """(kind, question, answer) about `person`. split: 'train' wordings, 'probe' (held-out) wordings, or 'all'.

        Each fact is asked directly (two wordings per split), then, unless `derived` is false for the 'train'
        split, by the derived questions (transformed, inverse, compositional, multi-hop: one wording per
        split). Inverse questions are asked only when no person in `known` shares the birth city and year.
        Only questions whose facts are all among `relations` are asked.
        """
        return [(kind, q, a) for kind, _, q, a in self.questions_about(person, split, known, derived, relations)]

    def questions_about(self, person: Person, split: str = "all", known: list[Person] = (), derived: bool = True,
                        relations=RELATIONS) -> list[tuple[str, str, str, str]]:
        """`questions`, each as (kind, relation, question, answer): relation names the facts it needs ("org"; a
        derived question the facts it combines, e.g. "city+year", see DERIVED_RELATIONS)."""
        lo, hi = {"train": (0, PROBE_SPLIT), "probe": (PROBE_SPLIT, None), "all": (0, None)}[split]
        out = []
        for relation, templates in QUESTIONS.items():
            wordings = templates[lo:hi]
            for i, template in enumerate(wordings):
                kind = "efficacy" if i == 0 else "paraphrase"
                out.append((kind, relation, template.format(name=person.name), answer(person, relation)))
        if not (split == "train" and not derived):
            half = {"train": slice(0, 1), "probe": slice(1, 2), "all": slice(0, 2)}[split]
            fmt = vars(person)
            # An inverse question (who was born in this city in this year?) only when its answer is unique.
            shares_birth = any(p.city == person.city and p.year == person.year for p in known if p.name != person.name)
            derived_questions = [("transformed", TRANSFORMED, decade(person.year)),
                                 ("inverse", [] if shares_birth else INVERSE, person.name),
                                 ("compositional", COMPOSITIONAL, f"{person.city} in {person.year}"),
                                 ("multi_hop", MULTI_HOP, self.hq[person.org])]
            for kind, templates, target in derived_questions:
                for template in templates[half]:
                    out.append((kind, "+".join(DERIVED_RELATIONS[kind]), template.format(**fmt), target))
        allowed = set(relations)
        return [row for row in out if allowed.issuperset(row[1].split("+"))]

    # ------------------------------------------------------------------------------------- the stream

    def stream(self) -> KnowledgeStream:
        cfg = self.cfg
        rng = random.Random(self._stream_rng_seed)
        everyone = self.background + self.stream_people
        steps, superseded = [], {}
        current = {}  # name -> Person as currently true (after changes)
        question_owner: dict[str, list[str]] = {}  # name -> ids of probes about its employer
        for t in range(cfg.num_steps):
            people = self.stream_people[t * cfg.entities_per_step : (t + 1) * cfg.entities_per_step]
            docs, probes, train_qa = [], [], {}
            for person in people:
                doc = Document(f"w{t}-{person.name.replace(' ', '_')}", self.document(person, rng), time=t,
                               subject=person.name)
                docs.append(doc)
                current[person.name] = person
                train_qa[doc.id] = self.qa_set(person, everyone)
                for k, (kind, relation, q, a) in enumerate(self.questions_about(person, "probe", everyone)):
                    probe = Probe(f"{doc.id}-q{k}", doc.id, q, [a], kind, direct_relation(kind, relation))
                    probes.append(probe)
                    if q in _org_dependent_questions(person):
                        question_owner.setdefault(person.name, []).append(probe.id)
            if t > 0 and cfg.changes_per_step:
                movers = rng.sample(sorted(n for n in current if n not in {p.name for p in people}),
                                    min(cfg.changes_per_step, len(current) - len(people)))
                for name in movers:
                    old = current[name]
                    new = Person(old.name, old.city, old.year, rng.choice([o for o in self.orgs if o != old.org]),
                                 old.field)
                    current[name] = new
                    text = rng.choice(CHANGE_TEMPLATES).format(name=name, old_org=old.org, org=new.org)
                    doc = Document(f"w{t}-move-{name.replace(' ', '_')}", text, time=t, subject=name)
                    docs.append(doc)
                    superseded.setdefault(t, set()).update(question_owner.get(name, []))
                    question_owner[name] = []
                    train_qa[doc.id] = [(q, a) for _, q, a in self.questions(new, "train", everyone, derived=False)
                                        if q in _org_dependent_questions(new)]
                    for k, (kind, relation, q, a) in enumerate(self.questions_about(new, "probe", everyone)):
                        if q in _org_dependent_questions(new):
                            probe = Probe(f"{doc.id}-q{k}", doc.id, q, [a], kind, direct_relation(kind, relation))
                            probes.append(probe)
                            question_owner[name].append(probe.id)
            steps.append(StreamStep(t, docs, probes, train_qa))
        return KnowledgeStream(steps, self.background_probes(), self.heldout_texts(), superseded,
                               self.rehearsal_texts(), [p.name for p in self.background])

    def qa_set(self, person: Person, known: list[Person]) -> list[tuple[str, str]]:
        """A stream document's QA set (what selfparam and ft_qa train on), in training wordings only.

        Each fact asked directly in two wordings; with `qa_set: document` also the derived questions that
        the document alone answers (decade, inverse, city and year), as a QA generator reading only the
        document could write them. Multi-hop questions need the employer's headquarters, which the document
        does not state: they are only ever probes. Probes ask everything in held-out wordings.
        """
        derived = self.cfg.qa_set == "document"
        return [(q, a) for kind, q, a in self.questions(person, "train", known, derived) if kind != "multi_hop"]

    # The background is split in two halves: methods may rehearse what the model knows about the first
    # (`rehearsal_texts`, the stream's unrelated text), locality asks only about the second. So a method that
    # rehearses the model's own knowledge is measured on facts it never rehearsed.

    def learnt_background(self, share: float = 1.0) -> list[Person]:
        """The background people a reader pretrained on `share` of the background knows: the first ones."""
        return self.background[: max(1, round(share * len(self.background)))]

    def rehearsal_people(self) -> list[Person]:
        return self.background[1::2]

    def locality_people(self) -> list[Person]:
        return self.background[0::2]

    def rehearsal_texts(self) -> list[str]:
        """What the model already knows, as it learnt it: the rehearsal half's documents, the organisations'
        documents, and the rehearsal half's questions (training wordings, four turns to a text, answered)."""
        rng = random.Random(self.cfg.seed + 271828)
        people = self.rehearsal_people()
        texts = [self.document(p, rng) for p in people]
        texts += [rng.choice(ORG_DOC_TEMPLATES).format(org=o, hq=self.hq[o]) for o in self.orgs]
        for person in people:
            qa = [(q, a) for _, q, a in self.questions(person, "train", derived=False)]
            for wording in range(PROBE_SPLIT):
                texts.append(answered_turns(qa[wording::PROBE_SPLIT]))
        return texts

    def background_probes(self) -> list[Probe]:
        """Closed-book questions about the locality half of the background (held-out wordings): locality.

        Their kind says whether the person shares a first or last name with someone of the stream
        ('namesake') or not ('unrelated'): new facts about "gus castellan" can bleed into what the model
        says about "luca castellan", so the protocol reports locality on each kind as well as on all.
        """
        stream_names = {part for p in self.stream_people for part in p.name.split()}
        probes = []
        for person in self.locality_people():
            locality_kind = "namesake" if stream_names & set(person.name.split()) else "unrelated"
            for k, (kind, q, a) in enumerate(self.questions(person, "probe", self.background)):
                if kind in ("efficacy", "paraphrase"):
                    probes.append(Probe(f"bg-{person.name.replace(' ', '_')}-q{k}", "", q, [a], locality_kind))
        return probes

    def heldout_texts(self, n: int = 64) -> list[str]:
        """Documents about people who appear nowhere else: general ability is the LM loss on these."""
        rng = random.Random(self.cfg.seed + 7919)
        return [self.document(self.fresh_person(rng), rng) for _ in range(n)]

    # ------------------------------------------------------------------------------------- edits

    def edits(self) -> EditStream:
        """Counterfactual edits about background people: each changes one relation to a new value.

        The first round edits each background person once; further rounds edit the same people again, each
        time a relation not yet edited, so a world of n background people holds up to 3n edits (fewer than
        `num_edits` when that is more).

        Each edit's `locality` asks three people of the locality half of the background, whom no editor's
        knowledge texts mention (held out); its `locality_covered` asks three of the rehearsal half, whose
        documents and questions the knowledge texts may hold: the difference is what those texts protect.
        """
        rng = random.Random(self.cfg.seed + 104729 + 1_000_003 * self.cfg.edit_seed)
        edits = []
        people = list(self.background)
        rng.shuffle(people)
        values = {"city": CITIES, "org": self.orgs, "field": FIELDS}
        count = min(self.cfg.num_edits, len(EDIT_RELATIONS) * len(people))

        def target(i: int) -> tuple[Person, str]:
            person_index, round_ = i % len(people), i // len(people)
            return people[person_index], EDIT_RELATIONS[(person_index + round_) % len(EDIT_RELATIONS)]

        # Locality asks only facts no edit of the stream changes: after all edits, an edited fact's right
        # answer is its new value, so asking it would score a correct edit as a locality failure.
        edited = {(person.name, relation) for person, relation in map(target, range(count))}
        for i in range(count):
            person, relation = target(i)
            true = answer(person, relation)
            new = rng.choice([v for v in values[relation] if v != true])
            wordings = [t.format(name=person.name) for t in QUESTIONS[relation]]
            held_out = rng.sample([p for p in self.locality_people() if p.name != person.name], 3)
            known = rng.sample([p for p in self.rehearsal_people() if p.name != person.name], 3)
            locality = [self.unedited_fact(rng, p, edited) for p in held_out]
            covered = [self.unedited_fact(rng, p, edited) for p in known]
            portability = []
            if relation == "org":
                portability = [(t.format(name=person.name), self.hq[new]) for t in MULTI_HOP]
            elif relation == "city":
                portability = [(t.format(name=person.name, city=new, year=person.year), f"{new} in {person.year}")
                               for t in COMPOSITIONAL]
            edits.append(Edit(f"edit-{i}", wordings[0], person.name, new, true, wordings[1:], locality, portability,
                              locality_covered=covered))
        return EditStream(edits, self.heldout_texts(), prompt_style="qa", knowledge_texts=self.knowledge_texts)

    @staticmethod
    def unedited_fact(rng: random.Random, person: Person, edited: set) -> tuple[str, str]:
        """A question about one of the person's facts that no edit of the stream changes, and its answer."""
        relation = rng.choice([r for r in QUESTIONS if (person.name, r) not in edited])
        return QUESTIONS[relation][0].format(name=person.name), answer(person, relation)

    def knowledge_texts(self, which: str, limit: int, seed: int) -> list[str]:
        """Generic text that stands for the reader's existing knowledge, from its own pretraining text (what
        editors protect: O-Edit's knowledge subspace, AlphaEdit's K0); at most `limit` texts, drawn with `seed`.

        Only the rehearsal half of the background and its organisations: the locality half, what
        `locality` asks about, appears in no knowledge text (`locality_covered` asks about the rehearsal half).
        `pretrain`: their documents. `mix`: the reader's pretraining mix as it saw it, half documents, half
        question turns (four to a text, in the pretraining prompt format), leaving out the one wording per
        relation that edit and locality prompts use, so no locality prompt is ever part of it. Never the
        held-out texts.
        """
        documents, qa = self.background_corpus(self.rehearsal_people())
        rng = random.Random(seed + 4099)
        if which == "pretrain":
            return rng.sample(documents, limit) if len(documents) > limit else documents
        asked = {t.format(name=p.name) for p in self.background for t in (w[0] for w in QUESTIONS.values())}
        qa = [(q, a) for q, a in qa if q not in asked]
        rng.shuffle(qa)
        turns = [answered_turns(qa[i:i + 4]) for i in range(0, len(qa), 4)]
        n_docs = min(len(documents), limit // 2)
        return rng.sample(documents, n_docs) + turns[: limit - n_docs]

    # ------------------------------------------------------------------------------------- pretraining

    def background_corpus(self, people: list[Person] | None = None) -> tuple[list[str], list[tuple[str, str]]]:
        """(documents, question-answer pairs) that teach the reader its background knowledge: about `people`
        (default: the whole background) and the organisations."""
        rng = random.Random(self.cfg.seed + 31337)
        documents, qa = [], []
        for person in self.background if people is None else people:
            documents.append(self.document(person, rng))
            qa.extend((q, a) for _, q, a in self.questions(person, "all", self.background))
        for org in self.orgs:
            documents.append(rng.choice(ORG_DOC_TEMPLATES).format(org=org, hq=self.hq[org]))
            qa.extend((q.format(org=org), self.hq[org]) for q in ORG_QUESTIONS)
        return documents, qa

    def reading_example(self, rng: random.Random, num_questions: int = 4,
                        max_documents: int = 3) -> tuple[str, list[tuple[str, str]]]:
        """(context, [(question, answer), ...]): one to `max_documents` documents about freshly drawn people
        (one document twice as often as any other count), and questions about any of them, so that answering
        needs the right person's document."""
        people = [self.fresh_person(rng) for _ in range(rng.choice((1, *range(1, max_documents + 1))))]
        docs = [self.document(p, rng) for p in people]
        qa = []
        for _ in range(num_questions):
            person = rng.choice(people)
            _, q, a = rng.choice(self.questions(person, "all", people))
            qa.append((q, a))
        return reading_context(docs), qa

    def texts(self) -> list[str]:
        """Text that covers the world's whole vocabulary (to train the tokenizer on)."""
        words = FIRST_NAMES + LAST_NAMES + CITIES + ORG_FIRST + ORG_LAST + FIELDS + [str(y) for y in YEARS]
        words += [decade(y) for y in YEARS[::10]]
        templates = DOC_TEMPLATES + ORG_DOC_TEMPLATES + CHANGE_TEMPLATES + TRANSFORMED + INVERSE + COMPOSITIONAL
        templates += MULTI_HOP + ORG_QUESTIONS + tuple(q for qs in QUESTIONS.values() for q in qs)
        return [" ".join(words), "question : answer :"] + list(templates)


def reading_context(documents: list[str]) -> str:
    """Several documents as one reading context, joined as the reader is pretrained on them."""
    return " ".join(documents)


def _org_dependent_questions(person: Person) -> set[str]:
    """Questions whose answer changes when the person's employer changes."""
    qs = {t.format(name=person.name) for t in QUESTIONS["org"]}
    return qs | {t.format(name=person.name) for t in MULTI_HOP}


@SOURCES.register("world")
def world_source(data_cfg):
    world = World(data_cfg.world)
    stream = world.stream()
    return stream.truncate(data_cfg.num_steps)


@SOURCES.register("world_edits")
def world_edit_source(data_cfg):
    return World(data_cfg.world).edits().truncate(data_cfg.num_edits)
