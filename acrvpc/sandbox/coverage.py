"""The coverage table of what the sandbox emulates, generated from the registries.

``python -m acrvpc.sandbox.coverage`` prints it as Markdown; ``--write`` refreshes the table in
docs/sandbox.md (between the ``coverage`` markers), and a test keeps the two in step.
"""

from __future__ import annotations

from . import server  # noqa: F401 - importing the server registers every service and route
from .admin import ADMIN_ROUTES
from .core.registry import SERVICES
from .gitlab.responses import _ROUTES as GITLAB_ROUTES


def coverage_markdown() -> str:
    lines = ["| product | API version | action | writes |", "|---|---|---|---|"]
    for version in sorted(SERVICES):
        service = SERVICES[version]
        for name in sorted(service.actions):
            lines.append(
                f"| {service.product} | {version} | {name} | {'yes' if service.actions[name].writes else ''} |"
            )
    lines += ["", "| GitLab REST v4 route |", "|---|"]
    lines += [f"| `{name}` |" for name in sorted({route[2] for route in GITLAB_ROUTES})]
    lines += ["", "| sandbox admin route |", "|---|"]
    lines += [f"| `{method} {path}` |" for method, path in sorted(ADMIN_ROUTES)]
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- coverage:begin -->", "<!-- coverage:end -->"


def with_table(doc: str) -> str:
    """``doc`` with the text between the coverage markers replaced by the current table."""
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{coverage_markdown()}{END}{tail}"


if __name__ == "__main__":  # pragma: no cover
    import sys
    from pathlib import Path

    if "--write" in sys.argv:
        path = Path(__file__).resolve().parents[2] / "docs" / "sandbox.md"
        path.write_text(with_table(path.read_text()))
        print(f"updated {path}")
    else:
        print(coverage_markdown(), end="")
