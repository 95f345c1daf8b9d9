"""Progress bars for the long command-line steps (generation, loads, training).

Shown on an interactive terminal only: in Airflow task logs, the benchmark and tests they stay
silent, so logs hold messages, not redraws.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], description: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    # disable=None: tqdm turns itself off when stderr is not a terminal.
    yield from tqdm(items, desc=description, total=total, unit=unit, disable=None, leave=False, dynamic_ncols=True)
