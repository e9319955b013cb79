"""Pure functions of the insight features: question normalisation, cache keys, latency buckets."""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

_PUNCTUATION = re.compile(r"[^\w\s]", re.UNICODE)
_SPACES = re.compile(r"\s+", re.UNICODE)

# Latency histogram: bucket i holds latencies in (BASE * RATIO**(i-1), BASE * RATIO**i] ms, so a
# percentile read from it is at most 25% above the true value. Bucket 0 holds everything <= 1 ms.
LATENCY_BASE_MS = 1.0
LATENCY_RATIO = 1.25
LATENCY_MAX_BUCKET = 80  # 1.25**80 ms ≈ 16 days: nothing is slower


def normalise_question(question: str) -> str:
    """What popular questions and the answer cache group by: case, whitespace and punctuation
    do not count ("What is X?" and "what is  x" are one question)."""
    text = unicodedata.normalize("NFKC", question).casefold()
    text = _PUNCTUATION.sub(" ", text).replace("_", " ")
    return _SPACES.sub(" ", text).strip()


def question_hash(question_key: str) -> str:
    """A short fixed-size id of a normalised question (a DynamoDB sort key, a SQLite key)."""
    return hashlib.sha256(question_key.encode()).hexdigest()[:20]  # 80 bits: short keys group faster


def cache_key(
    tenant_id: str, question_key: str, filters: Mapping[str, Any], parameters: Mapping[str, Any], corpus_version: int
) -> str:
    """The answer cache's key: one tenant, one normalised question, the same filters (kb_id among them)
    and model parameters, and the corpus as it is now (a change in it makes every older key unreachable)."""
    material = json.dumps(
        [tenant_id, question_key, filters, parameters, corpus_version],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


def latency_bucket(ms: float) -> int:
    if ms <= LATENCY_BASE_MS:
        return 0
    return min(LATENCY_MAX_BUCKET, math.ceil(math.log(ms / LATENCY_BASE_MS, LATENCY_RATIO) - 1e-9))


def bucket_upper_ms(bucket: int) -> float:
    return round(LATENCY_BASE_MS * LATENCY_RATIO**bucket, 2)


def percentile_from_buckets(buckets: Mapping[int, int], fraction: float) -> float | None:
    """The upper bound of the bucket holding the ``fraction`` percentile (None without data)."""
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(buckets):
        seen += buckets[bucket]
        if seen >= rank:
            return bucket_upper_ms(bucket)
    return bucket_upper_ms(max(buckets))
