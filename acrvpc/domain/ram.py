"""Reading a RAM policy document and deciding whether it allows an action: the product's own reader.

``acrvpc policy`` writes the least-privilege policy (:mod:`acrvpc.domain.policy`); this module reads one
back (a file a person wrote, or the generated one) and answers, per RAM action, whether it is allowed.
It follows RAM's documented policy grammar and evaluation, and shares no code with the sandbox's
enforcement (:mod:`acrvpc.sandbox.core.ram`): a unit test holds the two against each other on
hand-written cases, so "the suite passes under the generated policy" checks the policy against an
independent reading.

What is read (RAM, "Policy structure and syntax"):

* ``{"Version": "1", "Statement": [...]}``; each statement has ``Effect`` (``Allow`` or ``Deny``),
  exactly one of ``Action``/``NotAction`` and exactly one of ``Resource``/``NotResource`` (a string or a
  non-empty list of strings). ``Principal`` is accepted and ignored (it matters only in resource
  policies). ``Condition`` is refused: whether it holds depends on the request, so a policy with one
  cannot be decided here; the error says so rather than guessing.
* Matching: ``*`` matches any run of characters (also none), ``?`` exactly one; nothing else is
  special. Actions (``ecs:DescribeVpcs``) compare case-insensitively, resources (ARNs) exactly.
* Evaluation: a matching ``Deny`` wins; otherwise a matching ``Allow`` allows; otherwise the action is
  implicitly denied.

A malformed document raises :class:`RamPolicyError` naming the field (``Statement[2].Effect``) and the fix.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ALLOW, EXPLICIT_DENY, IMPLICIT_DENY = "Allow", "ExplicitDeny", "ImplicitDeny"
_FIELDS = ("Effect", "Action", "NotAction", "Resource", "NotResource", "Principal", "Condition")


class RamPolicyError(ValueError):
    """A RAM policy document that cannot be read; ``field`` is the dotted path of the bad part."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(f"{field}: {message}")


def wildcard_match(pattern: str, text: str, *, ignore_case: bool = False) -> bool:
    """Whether ``text`` matches ``pattern``, where ``*`` is any run of characters and ``?`` one character.

    Greedy two-pointer matching with backtracking to the last ``*`` (linear in practice, no regex).
    """
    if ignore_case:
        pattern, text = pattern.casefold(), text.casefold()
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == text[t]):
            p, t = p + 1, t + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif star >= 0:
            resume += 1
            p, t = star + 1, resume
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


@dataclass(frozen=True)
class Statement:
    """One statement: its effect and the action and resource patterns it names (or, negated, excludes)."""

    effect: str
    actions: tuple[str, ...]
    not_action: bool
    resources: tuple[str, ...]
    not_resource: bool

    def applies(self, action: str, resource: str | None) -> bool:
        """Whether the statement covers ``action`` on ``resource`` (``None``: the action alone decides)."""
        named = any(wildcard_match(p, action, ignore_case=True) for p in self.actions)
        if named == self.not_action:
            return False
        if resource is None:
            return True
        return any(wildcard_match(p, resource) for p in self.resources) != self.not_resource


@dataclass(frozen=True)
class RamPolicyDocument:
    """A read RAM policy: its statements, in order."""

    statements: tuple[Statement, ...]

    def decision(self, action: str, resource: str | None = None) -> str:
        """``Allow``, ``ExplicitDeny`` or ``ImplicitDeny`` for a RAM action (``ecs:CreateSecurityGroup``).

        Args:
            action: the RAM action, ``<service>:<Action>``.
            resource: the resource ARN asked about; ``None`` (the default) compares the actions only
                (a statement naming the action on any resource counts).
        """
        allowed = False
        for statement in self.statements:
            if statement.applies(action, resource):
                if statement.effect == "Deny":
                    return EXPLICIT_DENY
                allowed = True
        return ALLOW if allowed else IMPLICIT_DENY

    def allows(self, action: str, resource: str | None = None) -> bool:
        """Whether ``action`` (on ``resource``) is allowed."""
        return self.decision(action, resource) == ALLOW

    def refused(self, actions: Iterable[str], resource: str | None = None) -> list[str]:
        """The actions of ``actions`` the policy does not allow, in order (each once)."""
        return [a for a in dict.fromkeys(actions) if not self.allows(a, resource)]


def _strings(value: Any, field: str) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise RamPolicyError(field, 'write a non-empty string or a non-empty list of strings, e.g. "ecs:Describe*"')


def _statement(raw: Any, where: str) -> Statement:
    if not isinstance(raw, Mapping):
        raise RamPolicyError(where, "write each statement as an object with Effect, Action and Resource")
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise RamPolicyError(f"{where}.{unknown[0]}", f"not a statement field; use {', '.join(_FIELDS[:5])}")
    if raw.get("Effect") not in (ALLOW, "Deny"):
        raise RamPolicyError(f"{where}.Effect", f"write Allow or Deny (got {raw.get('Effect')!r})")
    if "Condition" in raw:
        raise RamPolicyError(
            f"{where}.Condition",
            "conditions depend on the request and are not evaluated: "
            "remove the Condition, or check the policy in RAM's simulator",
        )
    for key, negated in (("Action", "NotAction"), ("Resource", "NotResource")):
        if (key in raw) == (negated in raw):
            raise RamPolicyError(f"{where}.{key}", f"give exactly one of {key} and {negated}")
    action_key = "Action" if "Action" in raw else "NotAction"
    resource_key = "Resource" if "Resource" in raw else "NotResource"
    return Statement(
        effect=raw["Effect"],
        actions=_strings(raw[action_key], f"{where}.{action_key}"),
        not_action=action_key == "NotAction",
        resources=_strings(raw[resource_key], f"{where}.{resource_key}"),
        not_resource=resource_key == "NotResource",
    )


def read_policy(document: Mapping[str, Any] | str) -> RamPolicyDocument:
    """Read a RAM policy document (a mapping, or its JSON text).

    Raises:
        RamPolicyError: not JSON, not a Version 1 policy, or a statement is malformed (the field is named).
    """
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise RamPolicyError("(document)", f"not JSON ({exc}); write the policy as a JSON object") from None
    if not isinstance(document, Mapping):
        raise RamPolicyError("(document)", 'write a JSON object: {"Version": "1", "Statement": [...]}')
    if str(document.get("Version", "")) != "1":
        raise RamPolicyError("Version", 'RAM policies have "Version": "1"')
    raw = document.get("Statement")
    if not isinstance(raw, list):
        raise RamPolicyError("Statement", "write a list of statements")
    return RamPolicyDocument(tuple(_statement(s, f"Statement[{i}]") for i, s in enumerate(raw)))
