"""The benchmark: runs pipeline stages as separate processes at given scales and reports wall time,
CPU time, peak RSS, rows and rows per second, as JSON and Markdown in bench/results/.

A benchmark, not a test: nothing here asserts a target; the report states the figures and the
targets beside them.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

# Targets from the generator issue: 1M customers with two years of history on this 2-core machine.
TARGETS = {"generate": {"customers": 1_000_000, "wall_s": 300, "peak_rss_mb": 4096}}


@dataclass(frozen=True)
class StageResult:
    stage: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    rows: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s if self.wall_s else 0.0


def run_stage(stage: str, command: list[str], env: dict[str, str] | None = None) -> tuple[StageResult, str]:
    """Run one stage in a child process; wall, CPU and peak RSS come from the kernel's accounting."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = process.stdout.read() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"stage {stage} failed (exit {process.returncode}):\n{output[-3000:]}")
    # On Linux ru_maxrss is in KiB: the largest resident set of the stage's process tree.
    return StageResult(stage, round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2),
                       round(usage.ru_maxrss / 1024, 1), 0), output


def bench_generate(customers: int, days: int, work_dir: Path) -> dict[str, object]:
    crm = str(Path(sys.executable).with_name("crm"))
    landing, truth = work_dir / "landing", work_dir / "truth"
    shutil.rmtree(work_dir, ignore_errors=True)
    result, output = run_stage("generate", [crm, "generate", "--customers", str(customers), "--days", str(days),
                                            "--out", str(landing), "--truth", str(truth)])
    manifest = json.loads((truth / "manifest.json").read_text())
    rows = sum(manifest["rows"].values())
    result = StageResult(**{**asdict(result), "rows": rows})
    size_mb = sum(p.stat().st_size for p in landing.rglob("*") if p.is_file()) / 2**20
    return {"customers": customers, "days": days, "orders": manifest["rows"]["orders"], "landing_mb": round(size_mb),
            "stages": {result.stage: {**asdict(result), "rows_per_s": round(result.rows_per_s)}}}


def write_report(results: list[dict[str, object]], out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    report = {
        "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit or None,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "targets": TARGETS,
        "scales": results,
    }
    (out_dir / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Benchmark ({report['measured_at']}, commit {commit or 'uncommitted'})", "",
             f"{os.cpu_count()} CPUs, {platform.platform()}.", "",
             "| customers | orders | stage | wall s | CPU s | peak RSS MB | rows | rows/s |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |"]
    for scale in results:
        for name, stage in scale["stages"].items():  # type: ignore[union-attr]
            lines.append(f"| {scale['customers']:,} | {scale['orders']:,} | {name} | {stage['wall_s']} | "
                         f"{stage['cpu_s']} | {stage['peak_rss_mb']} | {stage['rows']:,} | {stage['rows_per_s']:,} |")
    target = TARGETS["generate"]
    lines += ["", f"Target: generate {target['customers']:,} customers with two years of history in at most "
                  f"{target['wall_s']} s and {target['peak_rss_mb']} MB peak RSS."]
    (out_dir / "latest.md").write_text("\n".join(lines) + "\n")
    return out_dir / "latest.md"


def main(scales: list[int], days: int, out_dir: Path, work_dir: Path) -> int:
    results = []
    for customers in scales:
        print(f"benchmark: generate {customers:,} customers x {days} days", flush=True)
        results.append(bench_generate(customers, days, work_dir / f"c{customers}"))
        shutil.rmtree(work_dir / f"c{customers}", ignore_errors=True)
    report = write_report(results, out_dir)
    print(report.read_text())
    return 0
