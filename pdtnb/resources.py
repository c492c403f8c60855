"""Quotas: CPU, memory and launch rate, shared by the tasks that draw on them.

A :class:`ResourceManager` holds a quota and the amount currently in use. Tasks reserve a job's
:class:`Resources` before starting it and relinquish them when it is reaped. The usage is
recomputed from the tasks' own view of their live jobs (the callbacks given to
:meth:`ResourceManager.register`) after each update phase, so a restarted pipeline counts the jobs
that outlived the previous process instead of starting from zero.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum

__all__ = ["ResourceType", "Resources", "ResourceManager", "parse_quantity"]

_SUFFIXES = {
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(quantity: str | int | float | Decimal) -> Decimal:
    """Parse a Kubernetes quantity such as ``"200Mi"``, ``"1.5"``, ``"100m"`` or ``"1e3"`` to a Decimal.

    Binary suffixes Ki Mi Gi Ti Pi Ei and decimal suffixes n u m k M G T P E are understood.
    Raises ValueError naming the input when it is not a quantity.
    """
    if isinstance(quantity, bool):
        raise ValueError(f"invalid quantity {quantity!r}")
    if isinstance(quantity, (int, float, Decimal)):
        value = quantity if isinstance(quantity, Decimal) else Decimal(str(quantity))
        if not value.is_finite():
            raise ValueError(f"invalid quantity {quantity!r}: not a finite number")
        return value
    if not isinstance(quantity, str):
        raise ValueError(f"invalid quantity {quantity!r}: expected a string or a number")
    text = quantity.strip()
    # "1E" is the exa suffix, not an exponent with no digits; the regex tries the exponent first
    # only when digits follow it, so both readings come out right.
    match = _QUANTITY.match(text)
    if not match:
        raise ValueError(f"invalid quantity {quantity!r}")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        return Decimal(number) * _SUFFIXES[suffix]
    except InvalidOperation:
        raise ValueError(f"invalid quantity {quantity!r}") from None


class ResourceType(Enum):
    """The kind of resource a reservation ran out of."""

    CPU = 1
    MEM = 2
    RATE = 3


@dataclass
class Resources:
    """An amount of CPU (cores), memory (bytes) and launches.

    ``launches`` defaults to None in both the constructor and :meth:`parse`. As a request, None
    counts as one launch; as a quota, None puts no limit on the launch rate. (pydatatask 0.4
    defaulted it to 1 in one and 999999999 in the other, so the same-looking quota behaved
    differently depending on how it was built.)
    """

    cpu: Decimal = Decimal(0)
    mem: Decimal = Decimal(0)
    launches: int | None = None

    def __post_init__(self) -> None:
        self.cpu = parse_quantity(self.cpu)
        self.mem = parse_quantity(self.mem)
        if self.launches is not None:
            self.launches = int(self.launches)

    @staticmethod
    def parse(
        cpu: str | float | int | Decimal = 0,
        mem: str | float | int | Decimal = 0,
        launches: str | float | int | Decimal | None = None,
    ) -> Resources:
        """Build Resources from Kubernetes quantities, e.g. ``Resources.parse("500m", "1Gi")``."""
        return Resources(
            cpu=parse_quantity(cpu),
            mem=parse_quantity(mem),
            launches=None if launches is None else int(parse_quantity(launches)),
        )

    @property
    def launch_count(self) -> int:
        """The number of launches this amount stands for as a request (None counts as one)."""
        return 1 if self.launches is None else self.launches

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpu + other.cpu, self.mem + other.mem, _add(self.launches, other.launches, 1))

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpu - other.cpu, self.mem - other.mem, _add(self.launches, other.launches, -1))

    def __mul__(self, factor: int) -> Resources:
        launches = None if self.launches is None else self.launches * factor
        return Resources(self.cpu * factor, self.mem * factor, launches)

    def excess(self, limit: Resources) -> ResourceType | None:
        """The first resource type on which this amount is over ``limit``, or None if within it."""
        if self.cpu > limit.cpu:
            return ResourceType.CPU
        if self.mem > limit.mem:
            return ResourceType.MEM
        if limit.launches is not None and (self.launches or 0) > limit.launches:
            return ResourceType.RATE
        return None


def _add(a: int | None, b: int | None, sign: int) -> int | None:
    if a is None and b is None:
        return None
    return (a or 0) + sign * (b or 0)


class ResourceManager:
    """Tracks usage against a quota; reservations are atomic with respect to each other."""

    def __init__(self, quota: Resources):
        self.quota = quota
        self._getters: list[Callable[[], Awaitable[Resources]]] = []
        self._used: Resources | None = None
        self._lock = asyncio.Lock()

    def register(self, func: Callable[[], Awaitable[Resources]]) -> None:
        """Register an async callback reporting the resources a task currently uses.

        The usage after a :meth:`flush` is the sum of all callbacks (live jobs, plus launches within
        the rate window).
        """
        self._getters.append(func)

    @property
    def used(self) -> Resources | None:
        """The cached usage, or None when it will be recomputed at the next reservation."""
        return self._used

    async def _current(self) -> Resources:
        if self._used is None:
            total = Resources(launches=0)
            for amount in await asyncio.gather(*(g() for g in self._getters)):
                total = total + amount
            self._used = total
        return self._used

    async def flush(self) -> None:
        """Forget the cached usage; the next reserve or relinquish recomputes it from the callbacks."""
        async with self._lock:
            self._used = None

    async def reserve(self, request: Resources) -> ResourceType | None:
        """Reserve ``request`` and return None, or reserve nothing and return the limiting type."""
        request = Resources(request.cpu, request.mem, request.launch_count)
        async with self._lock:
            used = await self._current()
            wanted = used + request
            over = wanted.excess(self.quota)
            if over is not None:
                return over
            self._used = wanted
            return None

    async def relinquish(self, request: Resources) -> None:
        """Give back a reservation's CPU and memory (launches stay counted until the window passes)."""
        async with self._lock:
            used = await self._current()
            self._used = Resources(used.cpu - request.cpu, used.mem - request.mem, used.launches)
