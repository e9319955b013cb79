"""The prompt Claude answers from: numbered passages, and the rule to cite them as [n]."""

from __future__ import annotations

from ragline.ports import AnswerPassage

# What every answer mode says when the documents do not answer the question (and then it cites nothing).
NOT_IN_DOCUMENTS = "The documents do not contain an answer to this question."
SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages from the user's knowledge base. "
    "Cite every claim with the number of the passage it comes from in square brackets, one number per "
    "bracket, like [1] or [2][3], placed right after the claim. Cite only the numbers of the passages given; "
    "never cite anything else in square brackets, such as a reference number that appears inside a passage. "
    "Keep numbers and units exactly as the passages write them. If the passages do not contain the answer, "
    f'reply only "{NOT_IN_DOCUMENTS}", cite nothing, and do not guess. Answer in the language of the question.'
)


def format_passages(passages: list[AnswerPassage]) -> str:
    blocks = []
    for passage in passages:
        where = passage.title or "untitled"
        if passage.page is not None:
            where += f", page {passage.page}"
        blocks.append(f"[{passage.number}] ({where})\n{passage.text.strip()}")
    return "\n\n".join(blocks)


def user_message(question: str, passages: list[AnswerPassage]) -> str:
    if not passages:
        return f"There are no passages for this question.\n\nQuestion: {question}"
    return f"Passages:\n\n{format_passages(passages)}\n\nQuestion: {question}"
