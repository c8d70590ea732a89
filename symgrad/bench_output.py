"""What every ``symgrad bench --suite`` does with its records: print its table, write the JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any


def report(
    suite: str,
    records: list[dict[str, Any]],
    lines: Iterable[str],
    *,
    repeat: int,
    json_path: str | None,
    out: Callable[[str], Any],
) -> list[dict[str, Any]]:
    """Print ``lines`` (the suite's table) through ``out``; with ``json_path``, write the suite's
    name, ``repeat`` and ``records`` there as JSON. Returns ``records``."""
    for line in lines:
        out(line)
    if json_path:
        with open(json_path, "w") as f:
            json.dump({"suite": suite, "repeat": repeat, "records": records}, f, indent=1)
    return records
