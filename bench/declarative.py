"""Load time of a large pipeline file: ``pdtnb.check`` and ``pdtnb.load`` of a generated file of
200 in-process tasks (issue 15: "note the load time of a 200-task file").

    .venv/bin/python bench/declarative.py [--tasks 200] [--shape chain|fan] [--formats yaml,toml,json]
                                          [--repeat 5]

The file: ``--tasks`` in-process tasks, each with its own done repository
(``YamlMetadataFileRepository``), an input and an output link to ``YamlMetadataFileRepository``s
and an output link to a ``FileRepository`` (its reports). ``chain``: task i reads what task i-1
writes (so the cycle check walks a 200-long path); ``fan``: every task reads one input. Paths
come from ``${BENCH_WORK}``, and the body is one function of a module beside the file.

Each format is measured in a fresh subprocess (this script with ``--worker``), which times, in
order: ``import pdtnb``; ``import jsonschema`` as the first check imports it (without
``rfc3987-syntax``, which the ``notebook`` extra's Jupyter installs and which builds an RFC 3987
parser at import, 2 to 3 s: see ``pdtnb.declarative.document.import_jsonschema``); the first
``check`` and the first ``load`` (cold: the module of the bodies is imported, the schema
generated and compiled once per process); then the best of ``--repeat`` ``check`` and ``load``
(warm). ``load`` includes ``check``. Nothing is opened: no directory is
created (the worker verifies it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BODIES = """\
async def step(job, inp, out, report):
    value = await inp.info(job)
    await out.dump(job, value + 1)
    async with await report.open(job, "w") as fp:
        await fp.write(f"{job}: {value} + 1\\n")
"""


def pipeline_text(tasks: int, shape: str) -> dict:
    """The pipeline, as the data a YAML, TOML or JSON file holds."""
    repositories: dict[str, dict] = {
        "data-0": {"kind": "YamlMetadataFileRepository", "filename": "${BENCH_WORK}/data-0"},
    }
    declared: dict[str, dict] = {}
    for i in range(1, tasks + 1):
        repositories[f"data-{i}"] = {"kind": "YamlMetadataFileRepository", "filename": f"${{BENCH_WORK}}/data-{i}"}
        repositories[f"reports-{i}"] = {
            "kind": "FileRepository",
            "basedir": f"${{BENCH_WORK}}/reports-{i}",
            "extension": ".txt",
        }
        repositories[f"done-{i}"] = {"kind": "YamlMetadataFileRepository", "filename": f"${{BENCH_WORK}}/done-{i}"}
        source = f"data-{i - 1}" if shape == "chain" else "data-0"
        declared[f"step-{i}"] = {
            "kind": "in-process",
            "func": "bench_bodies:step",
            "done": f"done-{i}",
            "retry": {"attempts": 2, "delay": 1, "on": ["OSError"]},
            "links": {
                "inp": {"repo": source, "kind": "input"},
                "out": {"repo": f"data-{i}", "kind": "output"},
                "report": {"repo": f"reports-{i}", "kind": "output"},
            },
        }
    return {"version": 1, "repositories": repositories, "tasks": declared}


def write_file(directory: Path, data: dict, syntax: str) -> Path:
    path = directory / f"pipeline.{syntax}"
    if syntax == "yaml":
        import yaml

        path.write_text(yaml.safe_dump(data, sort_keys=False, width=200))
    elif syntax == "json":
        path.write_text(json.dumps(data, indent=2))
    else:
        path.write_text(_toml(data))
    (directory / "bench_bodies.py").write_text(BODIES)
    return path


def _toml(data: dict) -> str:
    def value(v: object) -> str:
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    lines = [f"version = {data['version']}", "", "[repositories]"]
    lines += [f"{_key(name)} = {value(spec)}" for name, spec in data["repositories"].items()]
    for name, spec in data["tasks"].items():
        lines += ["", f"[tasks.{_key(name)}]"]
        lines += [f"{_key(k)} = {value(v)}" for k, v in spec.items() if k != "links"]
        lines += [f"links.{_key(k)} = {value(v)}" for k, v in spec["links"].items()]
    return "\n".join(lines) + "\n"


def _key(name: str) -> str:
    return name if name.replace("-", "").replace("_", "").isalnum() else json.dumps(name)


def worker(path: Path, repeat: int, tasks: int) -> dict:
    """Time the imports, the cold check and load, and the best warm ones, in this process."""
    figures: dict[str, float] = {}
    started = time.perf_counter()
    import pdtnb

    figures["import_pdtnb_s"] = time.perf_counter() - started
    already = "jsonschema" in sys.modules
    started = time.perf_counter()
    from pdtnb.declarative.document import import_jsonschema

    import_jsonschema()  # as the first check imports it
    figures["import_jsonschema_s"] = 0.0 if already else time.perf_counter() - started
    for what, call in (("check", pdtnb.check), ("load", pdtnb.load)):
        started = time.perf_counter()
        result = call(path)
        figures[f"{what}_cold_s"] = time.perf_counter() - started
        best = float("inf")
        for _ in range(repeat):
            started = time.perf_counter()
            result = call(path)
            best = min(best, time.perf_counter() - started)
        figures[f"{what}_warm_s"] = best
        counted = len(result.entries["tasks"]) if what == "check" else len(result.tasks)
        if counted != tasks:
            raise SystemExit(f"{what}: {counted} tasks, not {tasks}")
    created = [p.name for p in Path(os.environ["BENCH_WORK"]).iterdir()]
    if created:
        raise SystemExit(f"check and load created {created}")
    figures["file_bytes"] = path.stat().st_size
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--shape", choices=("chain", "fan"), default="chain")
    parser.add_argument("--formats", default="yaml,toml,json")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.worker is not None:
        print(json.dumps(worker(options.worker, options.repeat, options.tasks)))
        return

    data = pipeline_text(options.tasks, options.shape)
    print(
        f"# {options.tasks} in-process tasks ({options.shape}), {len(data['repositories'])} repositories; "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; best of {options.repeat} for the warm figures"
    )
    print(
        f"{'format':6} {'bytes':>8} {'import pdtnb':>13} {'import jsonschema':>17} {'check cold':>11} "
        f"{'check warm':>11} {'load cold':>10} {'load warm':>10}"
    )
    with tempfile.TemporaryDirectory(prefix="pdtnb-bench-decl-") as tmp:
        for syntax in options.formats.split(","):
            directory = Path(tmp) / syntax
            work = directory / "work"
            work.mkdir(parents=True)
            path = write_file(directory, data, syntax)
            result = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    str(path),
                    "--repeat",
                    str(options.repeat),
                    "--tasks",
                    str(options.tasks),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "BENCH_WORK": str(work)},
                check=False,
            )
            if result.returncode != 0:
                raise SystemExit(f"{syntax}: the worker failed:\n{result.stdout}{result.stderr}")
            f = json.loads(result.stdout)
            print(
                f"{syntax:6} {f['file_bytes']:>8} {f['import_pdtnb_s']:>12.3f}s {f['import_jsonschema_s']:>16.3f}s "
                f"{f['check_cold_s']:>10.3f}s {f['check_warm_s']:>10.3f}s {f['load_cold_s']:>9.3f}s "
                f"{f['load_warm_s']:>9.3f}s"
            )


if __name__ == "__main__":
    main()
