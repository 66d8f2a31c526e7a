"""More than one device for one candidate (`accelerate launch`) and the child-process training
protocol. What needs GPUs is tested through the commands and placements it builds; the rest runs
for real on the CPU (a two-process gloo data-parallel training of the tiny model). Candidates side
by side are the Ray engine's (tests/run/test_ray_engine.py)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from accelerate.commands.launch import launch_command_parser

from harness.core.errors import HarnessError
from harness.run import run_suite
from harness.store import Store
from harness.suite import AccelerateConfig, load_suite
from harness.training._launch import (
    Placement,
    TrainingJob,
    WorkerFailed,
    train_in_child,
    worker_command,
    worker_environment,
)
from harness.training._schedule import launch_placement, visible_gpus
from tests.helpers.training import Stages

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "suites" / "data"

SUITE = f"""\
name: multi
base: builtin:tiny
generation: {{max_new_tokens: 8}}
data:
  train: {{path: {DATA / "new_facts_train.jsonl"}}}
  new_facts: {{path: {DATA / "new_facts.jsonl"}}}
capabilities:
  - name: new_facts
    improve: {{metric: qa.f1, min_gain: 0.0}}
    checks: [{{type: qa, data: new_facts}}]
"""


def write_suite(tmp_path: Path, extra: str) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE + textwrap.dedent(extra))
    return path


FSDP_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_state_dict_type: FULL_STATE_DICT
mixed_precision: bf16
num_machines: 1
num_processes: 4
"""


# --- the launch command --------------------------------------------------------------------


def test_an_fsdp_candidate_launches_through_accelerate_with_its_config(tmp_path: Path) -> None:
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CONFIG)
    launch = AccelerateConfig(4, config, ("--fsdp_activation_checkpointing", "true"))
    placement = Placement(gpus=("2", "3", "4", "5"))
    command = worker_command(tmp_path / "job.json", launch, placement, port=29611)

    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    assert command[-3:] == ["-m", "harness.training.worker", str(tmp_path / "job.json")]
    # accelerate's own parser accepts every flag, and reads what we meant
    parsed = launch_command_parser().parse_args(command[3:])
    assert parsed.config_file == str(config)
    assert parsed.num_processes == 4 and parsed.num_machines == 1
    assert parsed.gpu_ids == "all"  # our CUDA_VISIBLE_DEVICES decides, not the config's ids
    assert parsed.main_process_port == 29611
    assert parsed.fsdp_activation_checkpointing == "true"  # passed through as written
    assert parsed.training_script == "harness.training.worker" and parsed.module
    assert worker_environment(placement)["CUDA_VISIBLE_DEVICES"] == "2,3,4,5"


def test_without_a_config_file_the_launch_is_plain_data_parallel(tmp_path: Path) -> None:
    command = worker_command(
        tmp_path / "job.json", AccelerateConfig(2, None), Placement(threads=1), port=29612
    )
    parsed = launch_command_parser().parse_args(command[3:])
    assert parsed.multi_gpu and parsed.num_processes == 2
    assert parsed.num_cpu_threads_per_process == 1
    env = worker_environment(Placement(threads=1))
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "1"


def test_a_one_device_child_runs_the_worker_alone(tmp_path: Path) -> None:
    command = worker_command(tmp_path / "job.json", None, Placement(gpus=("1",)), port=1)
    assert command[1:] == ["-m", "harness.training.worker", str(tmp_path / "job.json")]


# --- placements ------------------------------------------------------------------------------


def test_a_launch_takes_as_many_gpus_as_it_has_processes() -> None:
    placement = launch_placement(2, ["3", "5", "7"])
    assert placement.gpus == ("3", "5") and placement.threads is None  # GPUs keep torch's threads
    assert placement.describe() == "GPU 3,5"


def test_more_processes_than_gpus_is_an_error_not_a_hang() -> None:
    with pytest.raises(HarnessError, match="num_processes is 4, but only 2 GPU"):
        launch_placement(4, ["0", "1"])


def test_a_cpu_launch_splits_the_cores_between_its_processes() -> None:
    assert launch_placement(2, [], cores=8) == Placement((), 4)
    assert launch_placement(4, [], cores=2).threads == 1  # never zero threads
    assert visible_gpus() == []  # this machine has none: a launch here runs on the CPU


# --- the suite -------------------------------------------------------------------------------


def test_accelerate_and_the_removed_parallel_are_validated_at_their_lines(tmp_path: Path) -> None:
    path = write_suite(
        tmp_path,
        """\
        candidates:
          - {name: m, model: builtin:tiny-v2, accelerate: {num_processes: 2}}
          - name: t
            backend: lora
            data: train
            accelerate: {config_file: missing.yaml}
        """,
    )
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    found = "\n".join(caught.value.problems)
    assert (
        ":12:5: candidates[0]: `data`, `args`, `reward`, `replay`, `merge`, `accelerate` and "
        "`checkpoints` belong to trained candidates" in found
    )
    assert ":16:31: candidates[1].accelerate.config_file: no accelerate config file" in found

    write_suite(tmp_path, "training: {parallel: 2}\n")
    with pytest.raises(HarnessError) as caught:
        load_suite(path)
    assert (
        ':11:1: training: unknown key "training": `training: {parallel: N}` is gone'
        in (caught.value.problems[0])
    )
    assert "execution: {engine: ray}" in caught.value.problems[0]


def test_the_launch_is_part_of_the_artifact_key(tmp_path: Path) -> None:
    from harness.training._train import artifact_key

    config = tmp_path / "ddp.yaml"
    config.write_text("distributed_type: MULTI_GPU\n")
    keys = []
    for launch in (
        "",
        "accelerate: {num_processes: 2}",
        "accelerate: {num_processes: 4}",
        "accelerate: {num_processes: 4, config_file: ddp.yaml}",
    ):
        suite = load_suite(
            write_suite(
                tmp_path,
                f"candidates:\n  - {{name: t, backend: lora, data: train, {launch}}}\n".replace(
                    ", }", "}"
                ),
            )
        )
        keys.append(artifact_key(suite.trainings["t"], "fingerprint", 0, False))
    assert len(set(keys)) == 4  # more processes = a larger global batch = other weights


# --- training in child processes, for real on the CPU -----------------------------------------


def test_a_child_that_fails_reports_its_error_in_words(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    job = TrainingJob(
        str(tmp_path / "gone.yaml"), "hash", "builtin:tiny", "t", "/nowhere", str(scratch)
    )
    with pytest.raises(WorkerFailed, match=r"gone\.yaml"):
        train_in_child(job, None, Placement(threads=1), lambda _: None)
    assert list(scratch.iterdir()) == []  # the job's files are cleaned up


@pytest.mark.slow
def test_a_candidate_trains_over_two_processes_beside_one_in_the_run(
    tmp_path: Path, tiny_dir: Path
) -> None:
    path = write_suite(
        tmp_path,
        """\
        candidates:
          - {name: single, backend: lora, data: train, args: {learning_rate: 3.0e-3, max_steps: 60}}
          - name: ddp
            backend: lora
            data: train
            accelerate: {num_processes: 2}
            args: {learning_rate: 3.0e-3, max_steps: 20, per_device_train_batch_size: 4}
          - {name: diverges, backend: full, data: train, args: {learning_rate: 1.0e+30, max_steps: 3}}
        """,
    )
    stages = Stages()
    suite = load_suite(path)
    result = run_suite(suite, Store(tmp_path / "h.duckdb"), reporter=stages, retrain=True)
    by_name = {c.record.name: c for c in result.candidates}

    # a failing child is recorded in words, the others still train and evaluate
    assert result.exit_code == 3
    failed = by_name["diverges"].record
    assert failed.status == "error" and "TrainingDiverged: training loss became" in failed.error
    assert by_name["single"].record.status == by_name["ddp"].record.status == "ok"

    # one trained in the run's process; the accelerate candidate as two gloo processes
    single, ddp = (by_name[n].record.info["training"] for n in ("single", "ddp"))
    assert single["processes"] == 1 and ddp["processes"] == 2
    assert ddp["visible_devices"] == ""  # its child saw no GPU
    assert ddp["final_loss"] < 1.5  # it learned (the first steps are near 3)
    assert by_name["ddp"].metrics  # the two-process artifact loads and evaluates
    assert stages.stages["single"][0] == "training"
    assert "training (CPU)" in stages.stages["ddp"]

    # a rerun reuses both artifacts (the launch is part of their keys)
    again = run_suite(load_suite(path), Store(tmp_path / "h.duckdb"))
    reused = {
        c.record.name: c.record.info.get("training", {}).get("reused_artifact")
        for c in again.candidates
    }
    assert reused == {"single": True, "diverges": None, "ddp": True}


@pytest.mark.slow  # a child training and a two-process launch, each evaluated at checkpoints
def test_checkpoints_of_launches_are_evaluated_by_the_run(tmp_path: Path, tiny_dir: Path) -> None:
    """A launch's main process saves each checkpoint, the run evaluates it against its base and
    answers, and every process stops together; a candidate trained in the run's process beside it
    is evaluated at its checkpoints too."""
    path = write_suite(
        tmp_path,
        """\
        candidates:
          - name: child
            backend: lora
            data: train
            args: {learning_rate: 3.0e-3, max_steps: 6}
            checkpoints: {every: 3, select: best-passing}
          - name: ddp
            backend: full
            data: train
            accelerate: {num_processes: 2}
            args: {learning_rate: 3.0e-3, max_steps: 30, per_device_train_batch_size: 4}
            checkpoints: {every: 5, stop_on: forgetting}
        """,
    )
    # a forgetting gate for the early stop: full fine-tuning at 3e-3 erases the old facts
    old = "  - name: old\n    forgetting: {metric: qa.em, max_drop: 0.1, mode: point}\n"
    old += "    checks: [{type: qa, data: known}]\n"
    known = f"  known: {{path: {DATA / 'known_facts.jsonl'}}}\n"
    text = path.read_text().replace("capabilities:\n", "capabilities:\n" + old)
    path.write_text(text.replace("data:\n", "data:\n" + known, 1))
    store = Store(tmp_path / "h.duckdb")
    result = run_suite(load_suite(path), store, retrain=True)
    by_name = {c.record.name: c for c in result.candidates}
    assert all(c.record.status == "ok" for c in result.candidates), [
        c.record.error for c in result.candidates
    ]
    child = by_name["child"].record.info["training"]
    points = child["checkpoints"]["points"]
    assert child["processes"] == 1 and [p["step"] for p in points] == [3, 6]
    selected = next(p for p in points if p["step"] == child["checkpoints"]["selected_step"])
    assert by_name["child"].record.fingerprint == selected["fingerprint"]  # those weights kept

    ddp = by_name["ddp"].record.info["training"]
    assert ddp["processes"] == 2
    stopped = ddp["checkpoints"]
    assert stopped["stopped_at"] is not None and stopped["stopped_at"] < 30, stopped
    curve = store.load_run(result.run_id).loss_curves["ddp"]
    assert curve[-1][0] == stopped["stopped_at"]  # the launch stopped there, every process
