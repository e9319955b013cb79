"""The search filter language of API.md, parsed into a small tree that every engine evaluates.

Pure functions only: parsing validates (unknown fields and operators are 400s, not silent
no-ops) and tenant scoping makes sure no query leaves without its tenant.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Union

from ragline.chunks import (
    KEYWORD_FIELDS,
    METADATA_PREFIX,
    NUMERIC_FIELDS,
    Scalar,
    filterable_values,
    is_addressable_key,
    number_value,
)
from ragline.errors import BadRequest, Forbidden

RANGE_OPERATORS = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$exists", *RANGE_OPERATORS})

RangeOp = Literal["$gt", "$gte", "$lt", "$lte"]


@dataclass(frozen=True)
class Term:
    """The field holds any of these values (one value: equality)."""

    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    field: str
    op: RangeOp
    value: str | int | float


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class Not:
    child: FilterNode


@dataclass(frozen=True)
class And:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class Or:
    children: tuple[FilterNode, ...]


@dataclass(frozen=True)
class MatchAll:
    pass


FilterNode = Union[Term, Range, Exists, Not, And, Or, MatchAll]


def _check_field(name: str) -> str:
    if name in KEYWORD_FIELDS or name in NUMERIC_FIELDS:
        return name
    if name.startswith(METADATA_PREFIX) and len(name) > len(METADATA_PREFIX):
        if all(is_addressable_key(part) for part in name[len(METADATA_PREFIX) :].split(".")):
            return name
    raise BadRequest(
        f"unknown filter field {name!r}: use one of {', '.join(sorted(KEYWORD_FIELDS | NUMERIC_FIELDS))} "
        "or metadata.<key>",
        error="Invalid filter",
    )


def _scalar(field: str, value: Any) -> Scalar:
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"filter value for {field!r} must be a finite number", error="Invalid filter")
    if isinstance(value, (str, int, float, bool)):
        return value
    raise BadRequest(
        f"filter value for {field!r} must be a string, number or boolean, not {type(value).__name__}",
        error="Invalid filter",
    )


def _values(field: str, op: str, value: Any) -> tuple[Scalar, ...]:
    if not isinstance(value, list):
        raise BadRequest(f"{op} on {field!r} takes a list", error="Invalid filter")
    return tuple(_scalar(field, v) for v in value)


def _field_condition(field: str, spec: Any) -> FilterNode:
    if isinstance(spec, Mapping):
        if not spec:
            raise BadRequest(f"empty operator object for {field!r}", error="Invalid filter")
        parts: list[FilterNode] = []
        for op, value in spec.items():
            if op not in FIELD_OPERATORS:
                raise BadRequest(
                    f"unknown filter operator {op!r} on {field!r}: use one of {', '.join(sorted(FIELD_OPERATORS))}",
                    error="Invalid filter",
                )
            if op == "$eq":
                parts.append(Term(field, (_scalar(field, value),)))
            elif op == "$ne":
                parts.append(Not(Term(field, (_scalar(field, value),))))
            elif op == "$in":
                parts.append(Term(field, _values(field, op, value)))
            elif op == "$nin":
                parts.append(Not(Term(field, _values(field, op, value))))
            elif op == "$exists":
                if not isinstance(value, bool):
                    raise BadRequest(f"$exists on {field!r} takes true or false", error="Invalid filter")
                parts.append(Exists(field) if value else Not(Exists(field)))
            else:
                if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                    raise BadRequest(f"{op} on {field!r} takes a number or a string", error="Invalid filter")
                parts.append(Range(field, op, _scalar(field, value)))  # type: ignore[arg-type]
        return parts[0] if len(parts) == 1 else And(tuple(parts))
    if isinstance(spec, list):
        return Term(field, _values(field, "a list value", spec))
    if spec is None:
        raise BadRequest(f"filter value for {field!r} is null: use {{'$exists': false}}", error="Invalid filter")
    return Term(field, (_scalar(field, spec),))


def parse_filter(spec: Any, *, depth: int = 0) -> FilterNode:
    """Parse the API filter object. Every key of one object must hold (they are ANDed)."""
    if depth > 16:
        raise BadRequest("filter is nested too deeply", error="Invalid filter")
    if spec is None:
        return MatchAll()
    if not isinstance(spec, Mapping):
        raise BadRequest("filters must be a JSON object", error="Invalid filter")
    parts: list[FilterNode] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, list) or not value:
                raise BadRequest(f"{key} takes a non-empty list of filter objects", error="Invalid filter")
            children = tuple(parse_filter(child, depth=depth + 1) for child in value)
            parts.append(And(children) if key == "$and" else Or(children))
        elif key.startswith("$"):
            raise BadRequest(f"unknown filter operator {key!r}: use $and or $or at this level", error="Invalid filter")
        else:
            parts.append(_field_condition(_check_field(key), value))
    if not parts:
        return MatchAll()
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def _tenant_mentions(node: FilterNode) -> list[FilterNode]:
    if isinstance(node, (Term, Range, Exists)):
        return [node] if node.field == "tenant_id" else []
    if isinstance(node, Not):
        return _tenant_mentions(node.child)
    if isinstance(node, (And, Or)):
        return [m for child in node.children for m in _tenant_mentions(child)]
    return []


def scope_to_tenant(spec: Any, tenant_id: str) -> FilterNode:
    """Parse a request's filters and bind them to the caller's tenant.

    A tenant_id in the body that names another tenant is a 403, never a silent override.
    """
    node = parse_filter(spec)
    for mention in _tenant_mentions(node):
        if not isinstance(mention, Term):
            raise BadRequest("tenant_id can only be filtered by equality", error="Invalid filter")
        if any(value != tenant_id for value in mention.values):
            raise Forbidden("filters.tenant_id names another tenant than the API key's", error="Forbidden")
    tenant = Term("tenant_id", (tenant_id,))
    if isinstance(node, MatchAll):
        return tenant
    return And((tenant, node))


def tenant_of(node: FilterNode) -> str | None:
    """The tenant a scoped filter is bound to (the first clause scope_to_tenant adds)."""
    if isinstance(node, Term) and node.field == "tenant_id" and len(node.values) == 1:
        return str(node.values[0])
    if isinstance(node, And) and node.children:
        return tenant_of(node.children[0])
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(op: RangeOp, left: Any, right: Any) -> bool:
    """Range comparison between a stored value and the filter's; values of different kinds never match."""
    if _is_number(left) and _is_number(right):
        left, right = number_value(left), number_value(right)
    elif not (isinstance(left, str) and isinstance(right, str)):
        return False
    if op == "$gt":
        return left > right
    if op == "$gte":
        return left >= right
    if op == "$lt":
        return left < right
    return left <= right


def _same(left: Any, right: Any) -> bool:
    if _is_number(left) and _is_number(right):
        return number_value(left) == number_value(right)
    return isinstance(left, bool) == isinstance(right, bool) and left == right


def matches(node: FilterNode, payload: dict[str, Any]) -> bool:
    """Whether one payload satisfies a filter: the reference semantics every engine must agree with."""
    return _holds(node, filterable_values(payload))


def _holds(node: FilterNode, values: dict[str, list[Scalar]]) -> bool:
    if isinstance(node, MatchAll):
        return True
    if isinstance(node, Term):
        return any(_same(have, want) for have in values.get(node.field, ()) for want in node.values)
    if isinstance(node, Range):
        return any(compare(node.op, have, node.value) for have in values.get(node.field, ()))
    if isinstance(node, Exists):
        return node.field in values
    if isinstance(node, Not):
        return not _holds(node.child, values)
    if isinstance(node, And):
        return all(_holds(child, values) for child in node.children)
    if isinstance(node, Or):
        return any(_holds(child, values) for child in node.children)
    raise TypeError(f"unknown filter node {node!r}")
