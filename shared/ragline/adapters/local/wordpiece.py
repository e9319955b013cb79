"""The bundled model's WordPiece tokenizer (all-MiniLM-L6-v2), vendored in ragline.assets.

Only `tokenizers` is imported here, not onnxruntime: the Bedrock embedder counts chunk sizes in the
same word pieces as the local model, and must not pay for (or need) the ONNX runtime to do so."""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from importlib import resources

from tokenizers import Tokenizer

TOKENIZER_RESOURCE = ("ragline.assets", "minilm-l6-v2-tokenizer.json.gz")


def load_tokenizer() -> Tokenizer:
    package, name = TOKENIZER_RESOURCE
    raw = resources.files(package).joinpath(name).read_bytes()
    return Tokenizer.from_str(gzip.decompress(raw).decode("utf-8"))


class WordPieceTokenizer:
    """The model's tokenizer, exposed for chunking by tokens."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer

    def token_offsets(self, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [list(e.offsets) for e in encodings]
