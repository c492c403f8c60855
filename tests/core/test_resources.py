"""parse_quantity, Resources arithmetic and ResourceManager quota semantics."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from pdtnb import ResourceManager, Resources, ResourceType, parse_quantity

# ---- parse_quantity ---------------------------------------------------------------------------------

SUFFIXES = [
    ("n", Decimal("1e-9")),
    ("u", Decimal("1e-6")),
    ("m", Decimal("1e-3")),
    ("", Decimal(1)),
    ("k", Decimal(1000)),
    ("M", Decimal(10) ** 6),
    ("G", Decimal(10) ** 9),
    ("T", Decimal(10) ** 12),
    ("P", Decimal(10) ** 15),
    ("E", Decimal(10) ** 18),
    ("Ki", Decimal(1024)),
    ("Mi", Decimal(1024) ** 2),
    ("Gi", Decimal(1024) ** 3),
    ("Ti", Decimal(1024) ** 4),
    ("Pi", Decimal(1024) ** 5),
    ("Ei", Decimal(1024) ** 6),
]


@pytest.mark.parametrize(("suffix", "factor"), SUFFIXES, ids=[s or "none" for s, _ in SUFFIXES])
def test_parse_quantity_every_suffix(suffix, factor):
    assert parse_quantity(f"1{suffix}") == factor
    assert parse_quantity(f"3{suffix}") == 3 * factor
    assert parse_quantity(f"1.5{suffix}") == Decimal("1.5") * factor
    assert isinstance(parse_quantity(f"2{suffix}"), Decimal)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100m", Decimal("0.1")),
        ("250m", Decimal("0.25")),
        ("0.5", Decimal("0.5")),
        (".5", Decimal("0.5")),
        ("2.", Decimal(2)),
        ("1e3", Decimal(1000)),
        ("1E3", Decimal(1000)),
        ("2.5e2", Decimal(250)),
        ("1e-3", Decimal("0.001")),
        ("1e+2", Decimal(100)),
        ("1.5e3m", Decimal("1.5")),
        ("2e3Ki", Decimal(2000 * 1024)),
        ("+4", Decimal(4)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("0", Decimal(0)),
        ("128974848", Decimal(128974848)),
        ("129e6", Decimal(129000000)),
        ("123Mi", Decimal(123 * 2**20)),
    ],
)
def test_parse_quantity_decimals_and_exponents(text, expected):
    assert parse_quantity(text) == expected


def test_parse_quantity_exa_suffix_is_not_an_exponent():
    assert parse_quantity("2E") == 2 * Decimal(10) ** 18
    assert parse_quantity("2E2") == Decimal(200)


def test_parse_quantity_accepts_numbers():
    assert parse_quantity(3) == Decimal(3)
    assert parse_quantity(0.5) == Decimal("0.5")
    assert parse_quantity(Decimal("2.25")) == Decimal("2.25")


@pytest.mark.parametrize(
    "bad", ["", "abc", "1Zi", "--1", None, True, False, "Ki", "1K", "1ki", "1.2.3", "e3", "1e", "1 Gi", [1]]
)
def test_parse_quantity_rejects_bad_input_naming_it(bad):
    with pytest.raises(ValueError) as info:
        parse_quantity(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), "NaN", Decimal("NaN")], ids=["float", "str", "decimal"])
def test_parse_quantity_rejects_nan(bad):
    """A NaN cannot be compared with usage (Decimal raises InvalidOperation when a quota is checked), so
    it must be refused when parsed, as a ValueError naming it, not at the first reservation."""
    with pytest.raises(ValueError, match=r"(?i)nan"):
        parse_quantity(bad)


# ---- Resources ---------------------------------------------------------------------------------------


def test_resources_parse_quantities():
    r = Resources.parse("500m", "1Gi")
    assert r.cpu == Decimal("0.5")
    assert r.mem == Decimal(2**30)
    keywords = Resources.parse(cpu="1000m", mem="1Gi", launches="3")
    assert (keywords.cpu, keywords.mem, keywords.launches) == (Decimal(1), Decimal(2**30), 3)


def test_resources_spec_example():
    r = Resources.parse(1, 1, 100)
    r += Resources.parse(2, 3, 0)
    r -= Resources.parse(1, 1, 0)
    assert r == Resources.parse(2, 3, 100)
    assert r != Resources.parse(2, 3, 99)
    assert r != Resources.parse(2, 4, 100)


def test_resources_default_launches_do_not_depend_on_how_they_are_built():
    assert Resources().launches == Resources.parse(0, 0).launches
    assert Resources() == Resources.parse(0, 0)
    assert Resources(cpu=Decimal(1), mem=Decimal(2)) == Resources.parse(1, 2)


def test_resources_arithmetic():
    a = Resources.parse("1500m", "1Gi", 2)
    b = Resources.parse("500m", "512Mi", 1)
    assert a + b == Resources.parse(2, "1536Mi", 3)
    assert a - b == Resources.parse(1, "512Mi", 1)
    assert a + b - b == a
    # the operands are left alone
    assert a == Resources.parse("1500m", "1Gi", 2)


def test_resources_excess():
    limit = Resources.parse(2, "2Gi", 3)
    assert Resources.parse(1, "1Gi", 1).excess(limit) is None
    assert Resources.parse(2, "2Gi", 3).excess(limit) is None  # equal is within
    assert Resources.parse(3, "1Gi", 1).excess(limit) is ResourceType.CPU
    assert Resources.parse(1, "3Gi", 1).excess(limit) is ResourceType.MEM
    assert Resources.parse(1, "1Gi", 4).excess(limit) is ResourceType.RATE
    assert Resources.parse(3, "3Gi", 4).excess(limit) is ResourceType.CPU  # the first one over
    assert Resources.parse(1, "3Gi", 4).excess(limit) is ResourceType.MEM
    no_rate_limit = Resources.parse(2, "2Gi")
    assert Resources.parse(1, "1Gi", 10**9).excess(no_rate_limit) is None


def test_resource_type_values():
    assert (ResourceType.CPU.value, ResourceType.MEM.value, ResourceType.RATE.value) == (1, 2, 3)


# ---- ResourceManager -----------------------------------------------------------------------------------


async def test_reserve_counts_usage_and_refuses_over_quota():
    manager = ResourceManager(Resources.parse(cpu="1000m", mem="1Gi"))
    job = Resources.parse("400m", "256Mi")
    assert await manager.reserve(job) is None
    assert await manager.reserve(job) is None
    assert await manager.reserve(job) is ResourceType.CPU  # 1200m > 1000m
    # the refusal reserved nothing: a request that fits in what is left still succeeds
    assert await manager.reserve(Resources.parse("200m", "256Mi")) is None
    assert await manager.reserve(Resources.parse("1m", "1")) is ResourceType.CPU


async def test_reserve_refuses_memory():
    manager = ResourceManager(Resources.parse(100, "1Gi"))
    assert await manager.reserve(Resources.parse(1, "768Mi")) is None
    assert await manager.reserve(Resources.parse(1, "512Mi")) is ResourceType.MEM
    assert await manager.reserve(Resources.parse(1, "256Mi")) is None
    assert await manager.reserve(Resources.parse(0, "1")) is ResourceType.MEM


async def test_relinquish_gives_back_cpu_and_memory():
    manager = ResourceManager(Resources.parse(1, "1Gi"))
    job = Resources.parse(1, "1Gi")
    assert await manager.reserve(job) is None
    assert await manager.reserve(job) is ResourceType.CPU
    await manager.relinquish(job)
    assert await manager.reserve(job) is None


@pytest.mark.parametrize(
    "quota", [Resources.parse(1000, "1Ti"), Resources(cpu=Decimal(1000), mem=Decimal(2**40))], ids=["parse", "init"]
)
async def test_quota_without_launches_does_not_limit_launches(quota):
    manager = ResourceManager(quota)
    results = [await manager.reserve(Resources.parse("1m", "1Ki")) for _ in range(500)]
    assert results == [None] * 500


async def test_quota_with_launches_refuses_the_third_reservation():
    manager = ResourceManager(Resources.parse(100, "100Gi", 2))
    job = Resources.parse(1, "1Gi")
    assert await manager.reserve(job) is None
    assert await manager.reserve(job) is None
    assert await manager.reserve(job) is ResourceType.RATE
    # giving back CPU and memory does not give back launches within the window
    await manager.relinquish(job)
    assert await manager.reserve(job) is ResourceType.RATE
    # a flush recomputes usage from the (here: no) registered callbacks: a new window
    await manager.flush()
    assert await manager.reserve(job) is None


async def test_initial_usage_is_the_sum_of_registered_callbacks():
    manager = ResourceManager(Resources.parse(4, "4Gi"))
    usage = {"a": Resources.parse(2, "1Gi"), "b": Resources.parse(1, "1Gi")}

    async def task_a() -> Resources:
        return usage["a"]

    async def task_b() -> Resources:
        await asyncio.sleep(0)
        return usage["b"]

    manager.register(task_a)
    manager.register(task_b)
    assert await manager.reserve(Resources.parse(2, "1Gi")) is ResourceType.CPU  # 3 used + 2 > 4
    assert await manager.reserve(Resources.parse(1, "3Gi")) is ResourceType.MEM  # 2Gi used + 3Gi > 4Gi
    assert await manager.reserve(Resources.parse(1, "1Gi")) is None
    assert await manager.reserve(Resources.parse(1, "1Gi")) is ResourceType.CPU


async def test_flush_recomputes_usage_from_callbacks():
    manager = ResourceManager(Resources.parse(2, "2Gi"))
    reported = [Resources.parse(0, 0)]

    async def live_usage() -> Resources:
        return reported[0]

    manager.register(live_usage)
    assert await manager.reserve(Resources.parse(2, "1Gi")) is None
    assert await manager.reserve(Resources.parse(1, "1Gi")) is ResourceType.CPU
    # the task reports its jobs ended; only after a flush is that believed
    reported[0] = Resources.parse(0, 0)
    assert await manager.reserve(Resources.parse(1, "1Gi")) is ResourceType.CPU
    await manager.flush()
    assert await manager.reserve(Resources.parse(2, "2Gi")) is None
    # and a callback reporting more usage than was reserved counts after a flush too
    reported[0] = Resources.parse(2, 0)
    await manager.flush()
    assert await manager.reserve(Resources.parse("1m", 0)) is ResourceType.CPU


async def test_flush_counts_launches_reported_by_callbacks():
    manager = ResourceManager(Resources.parse(100, "100Gi", 3))

    async def recent_launches() -> Resources:
        return Resources.parse(0, 0, 3)

    manager.register(recent_launches)
    assert await manager.reserve(Resources.parse(1, 0)) is ResourceType.RATE


async def test_concurrent_reservations_never_exceed_the_quota():
    manager = ResourceManager(Resources.parse(10, "10Gi"))

    async def slow_usage() -> Resources:
        await asyncio.sleep(0.001)
        return Resources.parse(0, 0)

    manager.register(slow_usage)
    results = await asyncio.gather(*(manager.reserve(Resources.parse(1, "512Mi")) for _ in range(50)))
    assert results.count(None) == 10
    assert all(r in (None, ResourceType.CPU) for r in results)
    assert await manager.reserve(Resources.parse("1m", 0)) is ResourceType.CPU


async def test_concurrent_reservations_respect_the_launch_limit():
    manager = ResourceManager(Resources.parse(1000, "1Ti", 7))
    results = await asyncio.gather(*(manager.reserve(Resources.parse(1, "1Mi")) for _ in range(50)))
    assert results.count(None) == 7
    assert results.count(ResourceType.RATE) == 43


async def test_concurrent_reserve_and_relinquish_keep_usage_consistent():
    manager = ResourceManager(Resources.parse(5, "5Gi"))
    job = Resources.parse(1, "1Gi")

    async def run_one() -> bool:
        if await manager.reserve(job) is not None:
            return False
        await asyncio.sleep(0)
        await manager.relinquish(job)
        return True

    for _ in range(5):
        await asyncio.gather(*(run_one() for _ in range(20)))
    # everything was given back: the full quota is available again
    assert await manager.reserve(Resources.parse(5, "5Gi")) is None
    assert await manager.reserve(Resources.parse("1m", 0)) is ResourceType.CPU
