"""The prompt Claude answers from: numbered passages, and the rule to cite them as [n]."""

from __future__ import annotations

from ragline.ports import AnswerPassage

SYSTEM_PROMPT = (
    "You answer questions using only the numbered passages from the user's knowledge base. "
    "Cite every claim with the number of the passage it comes from in square brackets, like [1] or [2][3], "
    "placed right after the claim. Use only passage numbers that exist. If the passages do not contain the "
    "answer, say that the knowledge base does not say, and do not guess. Answer in the language of the question."
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
