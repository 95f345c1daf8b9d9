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
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from crm.pipeline import MODELS

# Targets on this 2-core machine at 1M customers with two years of history.
TARGETS = {"generate": {"customers": 1_000_000, "wall_s": 300, "peak_rss_mb": 4096},
           "quality_gates": {"customers": 1_000_000, "max_share_of_run": 0.10}}


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
    """Run one stage in a child process; wall, CPU and peak RSS come from the kernel's accounting.

    Returns the stage's standard output (the CLI prints its result there; logs go to a file).
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        output = process.stdout.read() if process.stdout else ""
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise RuntimeError(f"stage {stage} failed (exit {os.waitstatus_to_exitcode(status)}):\n"
                               f"{(log.read() + output)[-3000:]}")
        # On Linux ru_maxrss is in KiB: the largest resident set of the stage's process tree.
        return StageResult(stage, round(wall, 2), round(usage.ru_utime + usage.ru_stime, 2),
                           round(usage.ru_maxrss / 1024, 1), 0), output


def bench_scale(customers: int, days: int, work_dir: Path) -> dict[str, object]:
    """Generate, load (with the raw quality gate), build and gate the marts, train and score every model
    and publish, in a fresh home; then measure model quality against the generator's ground truth."""
    crm = str(Path(sys.executable).with_name("crm"))
    shutil.rmtree(work_dir, ignore_errors=True)
    env = {**os.environ, "CRM_HOME": str(work_dir)}
    for name in [name for name in env if name.startswith("CRM_") and name != "CRM_HOME"]:
        del env[name]  # the benchmark's home decides every path
    landing, truth = work_dir / "data" / "landing", work_dir / "data" / "truth"
    stages: dict[str, StageResult] = {}

    result, _ = run_stage("generate", [crm, "generate", "--customers", str(customers), "--days", str(days),
                                       "--out", str(landing), "--truth", str(truth)], env)
    manifest = json.loads((truth / "manifest.json").read_text())
    delivered = sum(manifest["rows"].values())
    stages["generate"] = replace(result, rows=delivered)
    size_mb = sum(p.stat().st_size for p in landing.rglob("*") if p.is_file()) / 2**20

    result, output = run_stage("load", [crm, "load"], env)
    loaded = json.loads(output)
    stages["load"] = replace(result, rows=sum(loaded["rows"].values()))
    result, _ = run_stage("dbt build", [crm, "build"], env)
    stages["dbt build"] = replace(result, rows=delivered)
    result, output = run_stage("mart gate", [crm, "gate"], env)
    stages["mart gate"] = replace(result, rows=sum(suite["rows"] for suite in json.loads(output).values()))
    gate_stages = ("load", "dbt build", "mart gate")
    for model in MODELS:
        result, output = run_stage(f"train {model}", [crm, "train", "--model", model], env)
        stages[f"train {model}"] = replace(result, rows=int(json.loads(output)["rows"]))
    for model in MODELS:
        result, output = run_stage(f"score {model}", [crm, "score", "--model", model], env)
        stages[f"score {model}"] = replace(result, rows=int(json.loads(output)["rows"]))
    result, output = run_stage("publish", [crm, "publish"], env)
    stages["publish"] = replace(result, rows=sum(json.loads(output).values()))
    _, output = run_stage("model quality", [crm, "evaluate"], env)

    pipeline_s = sum(stages[name].wall_s for name in gate_stages)
    gate_s = loaded["raw_gate"]["seconds"] + stages["mart gate"].wall_s
    return {"customers": customers, "days": days, "orders": manifest["rows"]["orders"], "landing_mb": round(size_mb),
            "stages": {name: {**asdict(stage), "rows_per_s": round(stage.rows_per_s)} for name, stage in stages.items()},
            "quality_gates": {"raw_validations": loaded["raw_gate"]["validations"],
                              "raw_gate_s": loaded["raw_gate"]["seconds"], "mart_gate_s": stages["mart gate"].wall_s,
                              "pipeline_s": round(pipeline_s, 2), "share_of_run": round(gate_s / pipeline_s, 4)},
            "model_quality": json.loads(output)}


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
    lines += ["", "Quality gates (the raw suites inside the load, the mart suites as their own stage; "
                  "Great Expectations' import and Data Docs included):", "",
              "| customers | raw validations | raw gate s | mart gate s | load + build + gate s | gate share |",
              "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for scale in results:
        gate = scale["quality_gates"]
        lines.append(f"| {scale['customers']:,} | {gate['raw_validations']} | {gate['raw_gate_s']} | "  # type: ignore[index]
                     f"{gate['mart_gate_s']} | {gate['pipeline_s']} | {gate['share_of_run']:.1%} |")  # type: ignore[index]
    lines += ["", "Model quality against the generator's ground truth at the last delivered day (`crm evaluate`; "
                  "target met ✓ or missed ✗):", "",
              "| customers | churn ROC-AUC / Bayes | churn ECE | satisfaction ROC-AUC / oracle "
              "(survey reference) | segmentation ARI: all (repeat buyers) |",
              "| ---: | ---: | ---: | ---: | ---: |"]
    for scale in results:
        quality = scale["model_quality"]
        met = {name: "✓" if ok else "✗" for name, ok in quality["targets_met"].items()}  # type: ignore[index]
        churn, satisfaction, segments = quality["churn"], quality["satisfaction"], quality["segmentation"]  # type: ignore[index]
        lines.append(f"| {scale['customers']:,} | {churn['auc_ratio']:.3f} {met['churn_auc_ratio']} | "
                     f"{churn['ece']:.3f} {met['churn_ece']} | {satisfaction['auc_ratio']:.3f} "
                     f"{met['satisfaction_auc_ratio']} ({satisfaction['survey_reference_auc_ratio']:.3f}) | "
                     f"{segments['ari']:.3f} {met['segmentation_ari']} ({segments['ari_repeat_buyers']:.3f}) |")
    quality_targets = results[0]["model_quality"]["targets"] if results else {}  # type: ignore[index]
    if quality_targets:
        lines += ["", f"Model targets: churn ROC-AUC at least {quality_targets['churn_auc_ratio_min']} of the "
                      f"Bayes-optimal and ECE at most {quality_targets['churn_ece_max']}; satisfaction ROC-AUC at least "
                      f"{quality_targets['satisfaction_auc_ratio_min']} of the oracle; segmentation ARI at least "
                      f"{quality_targets['segmentation_ari_min']}. The survey reference is what all survey answers "
                      "give with each customer's true segment known (see ml/ground_truth.py)."]
    target, gates = TARGETS["generate"], TARGETS["quality_gates"]
    lines += ["", f"Targets at {target['customers']:,} customers with two years of history: generate in at most "
                  f"{target['wall_s']} s and {target['peak_rss_mb']} MB peak RSS; the quality gates at most "
                  f"{gates['max_share_of_run']:.0%} of loading, building and gating."]
    (out_dir / "latest.md").write_text("\n".join(lines) + "\n")
    return out_dir / "latest.md"


def main(scales: list[int], days: int, out_dir: Path, work_dir: Path) -> int:
    results = []
    for customers in scales:
        print(f"benchmark: {customers:,} customers x {days} days", flush=True)
        results.append(bench_scale(customers, days, work_dir / f"c{customers}"))
        shutil.rmtree(work_dir / f"c{customers}", ignore_errors=True)
    report = write_report(results, out_dir)
    print(report.read_text())
    return 0
