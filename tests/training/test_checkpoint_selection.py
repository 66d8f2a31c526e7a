"""Which checkpoint is kept and when training stops (`checkpoints:` on a trained candidate).

The selection rules on scripted verdicts (fast); the real thing, trained and evaluated on the
built-in model, is in tests/run/test_checkpoints.py.
"""

from __future__ import annotations

from pathlib import Path

from harness.backends import Checkpoint
from harness.suite import Checkpoints
from harness.training import CheckpointPoint
from harness.training._checkpoints import CheckpointTracker


def point(step: int, improve: float | None, *outcomes: str) -> CheckpointPoint:
    """A checkpoint's verdict: an improve gate scoring `improve`, then forgetting gates."""
    gates = [{"kind": "improve", "outcome": "pass", "capability": "new", "metric": "m"}]
    gates += [
        {"kind": "forgetting", "outcome": o, "capability": "old", "metric": "m"} for o in outcomes
    ]
    return CheckpointPoint(step, f"f{step}", [], gates, improve, 0.1)


def weights(step: int) -> Checkpoint:
    def save(out: Path) -> None:
        out.mkdir(parents=True)
        (out / "step").write_text(str(step))

    return Checkpoint(step, 100, None, None, save)


def tracked(
    tmp_path: Path, settings: Checkpoints, points: list[CheckpointPoint]
) -> tuple[CheckpointTracker, list[bool]]:
    verdicts = iter(points)
    tracker = CheckpointTracker(settings, lambda _: next(verdicts), tmp_path)
    stops = [tracker.evaluate(weights(p.step)) for p in points]
    return tracker, stops


def final_model(tmp_path: Path, step: int) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "step").write_text(str(step))
    return model


def test_best_passing_keeps_the_best_passing_checkpoints_weights(tmp_path: Path) -> None:
    settings = Checkpoints(every=10, select="best-passing")
    points = [
        point(10, 0.4, "pass"),
        point(20, 0.7, "pass"),  # best among those that pass
        point(30, 0.7, "pass"),  # as good, later: the earlier is kept
        point(40, 0.9, "fail"),  # better, but it forgot
    ]
    tracker, stops = tracked(tmp_path, settings, points)
    model = final_model(tmp_path, 40)
    record = tracker.finish(model)
    assert stops == [False] * 4
    assert record["selected_step"] == 20 and record["selection"] == "best-passing"
    assert (model / "step").read_text() == "20"  # the artifact holds step 20's weights
    assert [p["passed"] for p in record["points"]] == [True, True, True, False]
    assert not (tmp_path / "best-checkpoint").exists()


def test_an_inconclusive_gate_is_not_a_pass_and_nothing_passing_keeps_the_last(
    tmp_path: Path,
) -> None:
    settings = Checkpoints(every=10, select="best-passing")
    tracker, _ = tracked(
        tmp_path, settings, [point(10, 0.5, "inconclusive"), point(20, 0.9, "fail")]
    )
    model = final_model(tmp_path, 20)
    record = tracker.finish(model)
    assert record["selected_step"] == 20 and "no checkpoint passed" in record["selection"]
    assert (model / "step").read_text() == "20"


def test_last_keeps_the_final_weights_whatever_passed(tmp_path: Path) -> None:
    tracker, _ = tracked(
        tmp_path, Checkpoints(every=10), [point(10, 0.9, "pass"), point(20, 0.1, "fail")]
    )
    model = final_model(tmp_path, 20)
    assert tracker.finish(model)["selected_step"] == 20
    assert (model / "step").read_text() == "20"


def test_stop_on_forgetting_needs_two_failing_checkpoints_in_a_row(tmp_path: Path) -> None:
    settings = Checkpoints(every=10, stop_on="forgetting")
    points = [
        point(10, 0.1, "fail"),
        point(20, 0.2, "pass"),
        point(30, 0.3, "fail"),
        point(40, 0.4, "pass", "fail"),
    ]
    tracker, stops = tracked(tmp_path, settings, points)
    assert stops == [False, False, False, True]
    record = tracker.finish(final_model(tmp_path, 40))
    assert record["stopped_at"] == 40 and "steps 30 and 40" in record["stop_reason"]
    without = Checkpoints(every=10)
    assert tracked(tmp_path / "b", without, [point(10, 0, "fail"), point(20, 0, "fail")])[1] == [
        False,
        False,
    ]
