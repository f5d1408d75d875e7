"""Parsed Alibaba Cloud RPC request with typed accessors for the wire encodings.

The SDKs send every API parameter in the query string: lists flattened as ``Name.N``
(1-based), structs as ``Name.N.Field``, Python booleans as ``True``/``False``, and a few
lists as JSON-array strings (ECS ``DescribeInstances.InstanceIds``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidParameter, MissingParameter


@dataclass
class RpcRequest:
    product: str
    version: str
    action: str
    params: dict[str, str]
    access_key_id: str = ""
    request_id: str = ""
    headers: dict[str, str] = field(default_factory=dict)

    def get(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.params.get(name)
        if value is None or value == "":
            if required:
                raise MissingParameter(name)
            return default
        return value

    def require(self, name: str) -> str:
        value = self.get(name, required=True)
        assert value is not None
        return value

    def get_bool(self, name: str, default: bool | None = None) -> bool | None:
        value = self.get(name)
        if value is None:
            return default
        low = value.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise InvalidParameter(name, f"Expected a boolean, got {value!r}.")

    def get_int(self, name: str, default: int | None = None) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidParameter(name, f"Expected an integer, got {value!r}.") from None

    def get_list(self, prefix: str) -> list[str]:
        """``Name.1=a&Name.2=b`` -> ``["a", "b"]`` (ordered by N)."""
        pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
        items = [(int(m.group(1)), v) for k, v in self.params.items() if (m := pattern.match(k))]
        return [v for _, v in sorted(items)]

    def get_struct_list(self, prefix: str) -> list[dict[str, Any]]:
        """``Name.1.Key=k&Name.1.Value=v`` -> ``[{"Key": "k", "Value": "v"}]``.

        A nested list such as ``Filter.1.Value.1`` becomes ``{"Value": ["..."]}``.
        """
        pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.([A-Za-z0-9]+)(?:\.(\d+))?$")
        structs: dict[int, dict[str, Any]] = {}
        nested: dict[tuple[int, str], list[tuple[int, str]]] = {}
        for key, value in self.params.items():
            m = pattern.match(key)
            if not m:
                continue
            index, fname, sub = int(m.group(1)), m.group(2), m.group(3)
            structs.setdefault(index, {})
            if sub is None:
                structs[index][fname] = value
            else:
                nested.setdefault((index, fname), []).append((int(sub), value))
        for (index, fname), values in nested.items():
            structs[index][fname] = [v for _, v in sorted(values)]
        return [structs[i] for i in sorted(structs)]

    def get_json_list(self, name: str) -> list[str]:
        """A JSON-array string parameter such as ``InstanceIds=["i-1","i-2"]``."""
        value = self.get(name)
        if value is None:
            return []
        try:
            parsed = json.loads(value)
        except ValueError:
            raise InvalidParameter(name, "Expected a JSON array string.") from None
        if not isinstance(parsed, list):
            raise InvalidParameter(name, "Expected a JSON array string.")
        return [str(v) for v in parsed]

    def get_tags(self, prefix: str = "Tag") -> list[tuple[str, str]]:
        """``Tag.N.Key`` / ``Tag.N.Value`` pairs."""
        return [(t.get("Key", ""), t.get("Value", "")) for t in self.get_struct_list(prefix)]
