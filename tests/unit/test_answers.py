"""Extractive answers and answer evidence: sentence splitting, page furniture, glyph runs, scoring,
citations one number per bracket, and confidence. Pure functions, table-style; no model is loaded."""

from __future__ import annotations

import numpy as np
import pytest

from ragline.chat.citations import (
    StreamingCitationFilter,
    drop_unknown_citations,
    is_grounded,
    one_number_per_bracket,
)
from ragline.chat.extractive import (
    EMBEDDED_CANDIDATES,
    NOT_IN_DOCUMENTS,
    Candidate,
    ExtractiveAnswerer,
    asks_quantity,
    choose,
    cite,
    complete_sentence,
    score,
)
from ragline.chat.sentences import (
    clean_passage,
    ends_complete,
    is_answer_sentence,
    is_furniture,
    is_glyph_run,
    split_sentences,
)
from ragline.chunks import next_chunk_id
from ragline.ports import AnswerDelta, AnswerPassage, AnswerRequest
from ragline.retrieval.evidence import ANSWER_FLOOR, Evidence, confidence, content_terms, term_coverage


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two.", ["One.", "Two."]),
        ("Speed vs. endurance was tested. It mattered.", ["Speed vs. endurance was tested.", "It mattered."]),
        ("Use a solvent, e.g. ethanol, first. Then dry it.", ["Use a solvent, e.g. ethanol, first.", "Then dry it."]),
        ("As shown in Fig. 3 the curve rises. Next one.", ["As shown in Fig. 3 the curve rises.", "Next one."]),
        ("Smith et al. found 2.5 mg/l. Jones disagreed.", ["Smith et al. found 2.5 mg/l.", "Jones disagreed."]),
        ("The mean was 25.59 ± 1.59 U/ml. It fell.", ["The mean was 25.59 ± 1.59 U/ml.", "It fell."]),
        (
            "The test comprised 10 sprints of 20 m. The subjects ran.",
            ["The test comprised 10 sprints of 20 m.", "The subjects ran."],
        ),
        ("Written by J. Smith in 2009. Read it.", ["Written by J. Smith in 2009.", "Read it."]),
        ("It is fast [3]. It is small [4, 5]. End", ["It is fast [3].", "It is small [4, 5].", "End"]),
        (
            "NO balances blood pressure (1,2). NO causes vasodilatation.",
            ["NO balances blood pressure (1,2).", "NO causes vasodilatation."],
        ),
        ("Table 1. Age of the footballers. They were young.", ["Table 1. Age of the footballers.", "They were young."]),
        ("Really? Yes! Fine.", ["Really?", "Yes!", "Fine."]),
        ("日本語の文です。二つ目の文です！三つ目？", ["日本語の文です。", "二つ目の文です！", "三つ目？"]),
        ("这是第一句。这是第二句。", ["这是第一句。", "这是第二句。"]),
        ("هذه جملة أولى. هذه جملة ثانية؟ وثالثة.", ["هذه جملة أولى.", "هذه جملة ثانية؟", "وثالثة."]),
        ("זה משפט ראשון. זה משפט שני.", ["זה משפט ראשון.", "זה משפט שני."]),
        ("First paragraph ends\n\nSecond one.", ["First paragraph ends", "Second one."]),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


@pytest.mark.parametrize(
    ("line", "glyphs"),
    [
        ("0 10 20 30 40 50", True),
        ("(a) (b) (c) (d)", True),
        ("1⁄4 Isc /C2 V oc /C2 FF Pin ð1Þ", True),
        ("−0.5 0.0 0.5 1.0", True),
        ("Age (years) 24.21 3.41 18.00 32.00", True),
        ("The test comprised 10 sprints of 20 m. The subjects", False),
        ("concentration of 15 g/l. After centrifugation at", False),
        ("NO is one of the relaxation factors", False),
        ("日本語の文です。", False),
    ],
)
def test_is_glyph_run(line, glyphs):
    assert is_glyph_run(line) is glyphs


@pytest.mark.parametrize(
    ("line", "furniture"),
    [
        ("362", True),
        ("- 12 -", True),
        ("Page 3 of 14", True),
        ("xiv", True),
        ("© TÜBİTAK", True),
        ("doi:10.3906/sag-0902-21", True),
        ("Y. Özen et al. / Solar Energy Materials & Solar Cells 137 (2015) 1–5 3", True),
        ("Turk J Med SciEffect of speed exercise on NO in footballersSAYGIN, Ö", True),
        ("June 2009Effect of speed exercise on NO in footballersNo: 3Vol: 39", True),
        ("Method of the Study", False),
        ("TraceMonkey supports all the JavaScript features", False),
        ("the GaInP/GaAs SC structure was grown on", False),
        ("20 footballers took part", False),
    ],
)
def test_is_furniture(line, furniture):
    assert is_furniture(line) is furniture


def test_clean_passage_drops_furniture_headings_and_glyphs_and_joins_lines():
    page = (
        "Turk J Med Sci\n362\nIntroduction\nUntil 15-20 years ago, NO was thought to be\n"
        "merely an exhaust gas (1,2).\n0 10 20 30 40\nIt balances blood pressure.\n"
        "Turk J Med SciEffect of speed exercise on NO in footballersSAYGIN, Ö\n363"
    )
    cleaned = clean_passage(page)
    assert "362" not in cleaned and "SAYGIN" not in cleaned and "Introduction" not in cleaned
    assert "0 10 20" not in cleaned
    assert split_sentences(cleaned)[-2:] == [
        "Until 15-20 years ago, NO was thought to be merely an exhaust gas (1,2).",
        "It balances blood pressure.",
    ]


@pytest.mark.parametrize(
    ("sentence", "complete"),
    [
        ("It ends.", True),
        ("It ends [3].", True),
        ("It ends (12).", True),
        ("to give a final", False),
        ("終わり。", True),
    ],
)
def test_ends_complete(sentence, complete):
    assert ends_complete(sentence) is complete


@pytest.mark.parametrize(
    ("sentence", "quotable"),
    [
        ("Returns are accepted within 30 days of purchase.", True),
        ("is as follows [3].", False),  # a fragment: starts mid-sentence
        ("Table 2. Serum NO levels of footballers before exercise.", False),  # a caption
        ("I. Gordon, S. Vallon, A. Nayolet, Thin-film solar cells, Sol.", False),  # a reference entry
        ("Sol. Energy Mater. Sol. Cells 93 (2009) 970–972.", False),
        ("Short one.", False),
        ("| a | b | c | d | e | f |", False),
        ("日本語の文はスペースなしで書かれます。", True),
    ],
)
def test_is_answer_sentence(sentence, quotable):
    assert is_answer_sentence(sentence) is quotable


@pytest.mark.parametrize(
    ("tail", "continuation", "sentence"),
    [
        # the next page, after its running header, finishes the sentence
        (
            "Plasma was diluted to give a final",
            "Y. Özen et al. / Solar Energy Materials & Solar Cells 137 (2015) 1–5\n3\nconcentration of 15 g/l. Then.",
            "Plasma was diluted to give a final concentration of 15 g/l.",
        ),
        # the next chunk on the page repeats the tail (overlap) and goes on
        (
            "It is tried a few more times (32 in our",
            "It is tried a few more times (32 in our implementation). Then it stops.",
            "It is tried a few more times (32 in our implementation).",
        ),
        ("A sentence cut", "A new page that starts a new sentence.", None),
    ],
)
def test_complete_sentence(tail, continuation, sentence):
    assert complete_sentence(tail, continuation) == sentence


def _candidate(text, number=1, rank=0, position=0, lexical=0.0, has_number=False):
    return Candidate(text, number, rank, position, lexical, has_number)


@pytest.mark.parametrize(
    ("a", "b", "a_wins"),
    [
        # meaning counts most; words break near-ties; a better-ranked passage wins ties
        ((_candidate("x", lexical=0.5), 0.7), (_candidate("y", lexical=0.5), 0.4), True),
        ((_candidate("x", lexical=1.0), 0.5), (_candidate("y", lexical=0.0), 0.55), True),
        ((_candidate("x", rank=3), 0.5), (_candidate("y", rank=0), 0.5), False),
    ],
)
def test_sentence_score(a, b, a_wins):
    assert (score(*a) > score(*b)) is a_wins


def test_sentence_score_prefers_figures_when_the_question_asks_for_a_quantity():
    with_number = _candidate("NO was 21.45 after.", has_number=True)
    without = _candidate("NO levels fell after exercise.")
    assert score(with_number, 0.5, wants_number=True) > score(without, 0.55, wants_number=True)
    assert score(with_number, 0.5, wants_number=False) < score(without, 0.55, wants_number=False)


@pytest.mark.parametrize(
    ("question", "quantity"),
    [
        ("How many footballers took part?", True),
        ("What was the mean NO level before exercise?", True),
        ("At what temperature were samples kept?", True),
        ("Which statistical test was used?", False),
        ("Who built TraceMonkey?", False),
    ],
)
def test_asks_quantity(question, quantity):
    assert asks_quantity(question) is quantity


def test_choose_groups_by_passage_in_reading_order():
    a2 = _candidate("A2", number=1, position=2)
    a1 = _candidate("A1", number=1, position=1)
    b0 = _candidate("B0", number=2, position=0)
    picked = choose([(0.9, a2), (0.85, b0), (0.8, a1), (0.1, _candidate("low"))])
    assert [c.text for c in picked] == ["A1", "A2", "B0"]


@pytest.mark.parametrize(
    ("sentence", "cited"),
    [("It ends.", "It ends [2]."), ("Ends?", "Ends [2]?"), ("No mark", "No mark [2]."), ("終わり。", "終わり [2]。")],
)
def test_cite(sentence, cited):
    assert cite(sentence, 2) == cited


class FakeEmbedder:
    """Vectors from word overlap with a tiny vocabulary: enough to rank sentences deterministically."""

    dimension = 8
    VOCAB = ("return", "days", "refund", "card", "shipping", "free", "purchase", "within")

    def _vector(self, text):
        words = text.lower()
        vector = np.array([1.0 if w in words else 0.0 for w in self.VOCAB], dtype=np.float32) + 0.01
        return vector / np.linalg.norm(vector)

    def embed_query(self, text):
        return self._vector(text)

    def embed_documents(self, texts):
        return np.stack([self._vector(t) for t in texts])


PASSAGES = [
    AnswerPassage(
        1, "Policy", 2, "Returns are accepted within 30 days of purchase. Shipping is free over $50.\n0 10 20 30"
    ),
    AnswerPassage(2, "FAQ", None, "Refunds for returns are paid to the original card within 5 business days."),
]


def test_extractive_answer_quotes_whole_sentences_with_citations():
    answerer = ExtractiveAnswerer(FakeEmbedder())
    answer = "".join(
        e.text
        for e in answerer.stream(AnswerRequest("How many days do I have to return a purchase?", PASSAGES))
        if isinstance(e, AnswerDelta)
    )
    assert "Returns are accepted within 30 days of purchase [1]." in answer
    assert "0 10 20" not in answer
    assert is_grounded(answer, 2)


def test_a_figure_earns_its_sentence_a_place_among_those_embedded_when_a_quantity_is_asked():
    """Only EMBEDDED_CANDIDATES sentences are embedded: the one with the figure must be among them even
    though three others share more of the question's words."""
    passage = AnswerPassage(
        1,
        "Study",
        1,
        "Nitric oxide levels of footballers rise with training. "
        "Nitric oxide of the footballers was measured in serum. "
        "Footballers breathe nitric oxide out after sprints. "
        "In all, 22 footballers were enrolled in the study.",
    )

    class Recording(FakeEmbedder):
        embedded: list[str] = []

        def embed_documents(self, texts):
            self.embedded.extend(texts[1:])
            return super().embed_documents(texts)

    embedder = Recording()
    ExtractiveAnswerer(embedder).best_sentences("How many footballers took part in the nitric oxide study?", [passage])
    assert len(embedder.embedded) == EMBEDDED_CANDIDATES
    assert "In all, 22 footballers were enrolled in the study." in embedder.embedded


def test_extractive_answer_without_passages_says_the_documents_do_not_contain_it():
    answerer = ExtractiveAnswerer(FakeEmbedder())
    events = list(answerer.stream(AnswerRequest("anything", [])))
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == NOT_IN_DOCUMENTS


@pytest.mark.parametrize(
    ("answer", "split"),
    [
        ("A [1, 2].", "A [1][2]."),
        ("A [2-4].", "A [2][3][4]."),
        ("A [1;3].", "A [1][3]."),
        ("In [1990-2010].", "In [1990-2010]."),  # not a range of citations
        ("A [1][2].", "A [1][2]."),
    ],
)
def test_one_number_per_bracket(answer, split):
    assert one_number_per_bracket(answer) == split


@pytest.mark.parametrize(
    ("answer", "sources", "kept", "grounded"),
    [
        ("A [1]. B [4].", 2, "A [1]. B .", True),
        ("A [3, 1].", 2, "A [1].", True),
        ("A [7]. B [0].", 2, "A . B .", False),
        (NOT_IN_DOCUMENTS, 0, NOT_IN_DOCUMENTS, False),
        ("Nothing cited.", 3, "Nothing cited.", False),
    ],
)
def test_citations_outside_the_sources_are_dropped_and_grounding_checked(answer, sources, kept, grounded):
    assert drop_unknown_citations(answer, sources) == kept
    assert is_grounded(answer, sources) is grounded


@pytest.mark.parametrize(
    "pieces", [["A [1, ", "2]. B [9]."], ["A [1", ", 2", "]. B [", "9]."], list("A [1, 2]. B [9].")]
)
def test_streaming_filter_splits_groups_and_tracks_grounding(pieces):
    stream = StreamingCitationFilter(source_count=2)
    out = "".join(stream.feed(p) for p in pieces) + stream.flush()
    assert out == "A [1][2]. B ."
    assert stream.grounded


def test_next_chunk_id():
    assert next_chunk_id("doc_1-v2-00009") == "doc_1-v2-00010"
    assert next_chunk_id("not-a-chunk-id") is None


@pytest.mark.parametrize(
    ("question", "terms"),
    [
        ("What is the capital of Mongolia?", {"capit", "mongolia"}),
        ("How many?", {"how", "mani"}),
    ],  # nothing but question words: keep them
)
def test_content_terms_leave_out_question_words(question, terms):
    assert content_terms(question) == terms


def test_term_coverage_is_the_best_passage_share():
    assert term_coverage("capital of Mongolia", ["Ulaanbaatar is the capital.", "Mongolia's capital"]) == 1.0
    assert term_coverage("capital of Mongolia", ["nothing here"]) == 0.0


@pytest.mark.parametrize(
    ("weaker", "stronger"),
    [
        (Evidence(0.1, None, 0.0), Evidence(0.4, None, 0.0)),
        (Evidence(0.4, None, 0.2), Evidence(0.4, None, 0.8)),
        (Evidence(0.3, None, 0.5), Evidence(0.7, None, 1.0)),
        (Evidence(None, 1.0, 0.3), Evidence(None, 1.0, 0.9)),
    ],
)
def test_confidence_grows_with_the_evidence(weaker, stronger):
    assert 0.0 <= confidence(weaker) < confidence(stronger) <= 1.0


@pytest.mark.parametrize(
    ("evidence", "answers"),
    [
        (Evidence(0.13, 2.1, 0.0), False),  # "What is the capital of Mongolia?" over three papers
        (Evidence(0.45, 3.2, 0.4), False),  # a topical question the papers do not answer
        (Evidence(0.31, 5.4, 1.0), True),  # every word found, weaker meaning
        (Evidence(0.60, 6.9, 0.67), True),
    ],
)
def test_answer_floor(evidence, answers):
    assert (confidence(evidence) >= ANSWER_FLOOR) is answers
