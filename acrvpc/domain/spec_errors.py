"""A spec's validation errors as ``(field, message with the fix)`` pairs, and the error that carries them.

Kept apart from :mod:`acrvpc.domain.spec` (which re-exports :class:`SpecError`): pure mapping of pydantic's
errors over whichever root model was validated, so it imports no spec section.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class SpecError(ValueError):
    """A spec that cannot be used. ``problems`` holds ``(field, message)`` pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s) in the spec; nothing was created."]
        lines += [f"  - {field}: {message}" for field, message in problems]
        super().__init__("\n".join(lines))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def validation_problems(exc: ValidationError, root: Any) -> list[tuple[str, str]]:
    """``(dotted field, message with the fix)`` for each error of validating ``root`` (the spec model)."""
    problems = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            msg = _missing(root, loc)
        elif err["type"] == "extra_forbidden":
            msg = "is not a spec field; check its spelling and indentation (see examples/sandbox.yaml)"
        if err["type"] == "value_error" and not loc:  # cross-field rules: "field: message; field: message"
            for part in msg.split("; "):
                field, _, m = part.partition(": ")
                problems.append((field, m))
            continue
        problems.append((_loc(loc), msg))
    return problems


def _field_at(root: Any, loc: tuple[Any, ...]) -> tuple[Any, Any, bool]:
    """The FieldInfo at ``loc``, the model its value is (or None), and whether it is a list of them."""
    model: Any = root
    field: Any = None
    is_list = False
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None, None, False
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        is_list = getattr(ann, "__origin__", None) is list
        model = inner[0] if inner and hasattr(inner[0], "model_fields") else ann
    return field, (model if hasattr(model, "model_fields") else None), is_list


def _missing(root: Any, loc: tuple[Any, ...]) -> str:
    """``is required``, what the field is, and what to add: a section's required fields, with example values.

    E.g. a removed ``network:`` gives ``is required: The VPC side: ...; add the section with its required
    fields, e.g. network: {vpc_id: vpc-bp1..., vswitch_id: vsw-bp1...} (see examples/sandbox.yaml)``.
    """
    field, model, is_list = _field_at(root, loc)
    if field is None:
        return "is required (see examples/sandbox.yaml)"
    msg = "is required" + (f": {field.description}" if field.description else "")
    name = str(loc[-1])
    if model is not None:
        required = [(key, sub) for key, sub in model.model_fields.items() if sub.is_required()]
        body = ", ".join(f"{key}: {sub.examples[0] if sub.examples else '...'}" for key, sub in required)
        example = f"[{{{body}}}]" if is_list else f"{{{body}}}"
        what = "a list of entries with their" if is_list else "the section with its"
        return msg.rstrip(".") + f"; add {what} required fields, e.g. {name}: {example} (see examples/sandbox.yaml)"
    if field.examples and str(field.examples[0]) not in msg:
        return msg.rstrip(".") + f"; add it, e.g. {name}: {field.examples[0]}"
    return msg
