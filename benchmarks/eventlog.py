"""Where a DAG run's seconds go, from Spark's own event log: jobs, task time and shuffle per task of the DAG.

``movielens-als run`` tags every Spark job with the DAG task that started it (``task-<key>``); a run
started with :func:`event_log_env` writes one uncompressed event log, and :func:`profile` sums it per
tag: Spark jobs, their wall seconds, executor task seconds (run and CPU; Python workers' CPU is not
in Spark's CPU figure), shuffle written, and the Delta commits each task made (commit timestamps
from the tables' ``_delta_log``, placed in the task's window of jobs). Jobs that carry no tag (Spark
ML's ALS runs RDD jobs outside any SQL execution) belong to the task of the tagged job before them:
the tasks run one after the other.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

TAG = re.compile(r"(?:^|-)task-(\w+)$")  # movielens_als.bundle.runner.TASK_TAG, as Spark prefixes it
COLUMNS = ("jobs", "job s", "task s", "task CPU s", "shuffle MB", "Delta commits")


def event_log_env(folder: Path) -> dict[str, str]:
    """Environment for a run whose driver writes its event log under ``folder`` (one plain JSON-lines file)."""
    folder.mkdir(parents=True, exist_ok=True)
    confs = {
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": folder.resolve().as_uri(),
        "spark.eventLog.compress": "false",
        "spark.eventLog.rolling.enabled": "false",
    }
    return {"PYSPARK_SUBMIT_ARGS": " ".join(f"--conf {k}={v}" for k, v in confs.items()) + " pyspark-shell"}


def _task_of(tags: str | None) -> str | None:
    for tag in (tags or "").split(","):
        match = TAG.search(tag)
        if match:
            return match.group(1)
    return None


def _accumulable(stage: dict, name: str) -> float:
    return sum(float(a.get("Value") or 0) for a in stage["Accumulables"] if a.get("Name") == name)


def profile(event_log: Path, tables: Path | None = None) -> dict[str, dict[str, float]]:
    """Per DAG task: the figures of ``COLUMNS``; ``tables`` is the warehouse folder whose Delta logs are read."""
    out: dict[str, dict[str, float]] = defaultdict(lambda: dict.fromkeys(COLUMNS, 0.0))
    job_task, job_start, stage_task = {}, {}, {}
    windows: dict[str, list[float]] = {}
    previous = "(before the first task)"
    with open(event_log, encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                task = _task_of(event.get("Properties", {}).get("spark.job.tags")) or previous
                previous = task
                job_task[event["Job ID"]], job_start[event["Job ID"]] = task, event["Submission Time"]
                for stage in event["Stage IDs"]:
                    stage_task[stage] = task
                out[task]["jobs"] += 1
                window = windows.setdefault(task, [event["Submission Time"], event["Submission Time"]])
                window[0] = min(window[0], event["Submission Time"])
            elif kind == "SparkListenerJobEnd" and event["Job ID"] in job_task:
                task = job_task[event["Job ID"]]
                out[task]["job s"] += (event["Completion Time"] - job_start[event["Job ID"]]) / 1000
                windows[task][1] = max(windows[task][1], event["Completion Time"])
            elif kind == "SparkListenerStageCompleted":
                stage = event["Stage Info"]
                task = stage_task.get(stage["Stage ID"], previous)
                out[task]["task s"] += _accumulable(stage, "internal.metrics.executorRunTime") / 1000
                out[task]["task CPU s"] += _accumulable(stage, "internal.metrics.executorCpuTime") / 1e9
                out[task]["shuffle MB"] += _accumulable(stage, "internal.metrics.shuffle.write.bytesWritten") / 2**20
    if tables is not None:
        _count_commits(out, windows, tables)
    return dict(out)


def _count_commits(out: dict, windows: dict[str, list[float]], tables: Path) -> None:
    """A commit belongs to the last task whose first job started before it (a commit follows its write's jobs)."""
    starts = sorted((window[0], task) for task, window in windows.items())
    for commit in tables.glob("**/_delta_log/*.json"):
        with open(commit, encoding="utf-8") as actions:
            for line in actions:
                info = json.loads(line).get("commitInfo")
                if info is not None:
                    owners = [task for start, task in starts if start <= info["timestamp"]]
                    if owners:
                        out[owners[-1]]["Delta commits"] += 1
                    break


def find_event_log(folder: Path) -> Path:
    logs = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.endswith(".inprogress"))
    if len(logs) != 1:
        raise SystemExit(f"expected one finished event log in {folder}, found {[p.name for p in logs]}")
    return logs[0]


def table(rows: dict[str, dict[str, float]], seconds: dict[str, float], order: tuple[str, ...]) -> str:
    """Markdown: one row per DAG task in ``order`` (then any other tag), its wall seconds beside the Spark figures."""
    head = ["stage", "wall s", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    names = [t for t in order if t in rows or t in seconds] + sorted(t for t in rows if t not in order)
    for name in names:
        figures = rows.get(name, dict.fromkeys(COLUMNS, 0.0))
        wall = f"{seconds[name]:.1f}" if name in seconds else ""
        cells = [name, wall, *(f"{figures[c]:.0f}" if c in ("jobs", "Delta commits") else f"{figures[c]:.1f}"
                              for c in COLUMNS)]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
