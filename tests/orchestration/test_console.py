"""What `finegrain run` prints: a line per task when it finishes (with when it started) or is served from the
cache, a progress line for the running tasks, the warnings; each task's whole output in its own log file,
named for its member once its executor input says."""

from __future__ import annotations

import io
import json
import logging
import threading

from finegrain.orchestration.console import TaskConsole, _Task

EXECUTOR_INPUT = {"inputs": {"parameterValues": {"fold": 1.0, "backbone": "convnext"}}, "outputs": {}}


def _train_task(bar: str) -> None:
    """What a train task's thread does under kfp.local: its log records and its subprocess's output."""
    logging.info("Executing task \x1b[96m'train'\x1b[0m")
    print("    [KFP Executor 2026-12-07 04:10:14,769 INFO]: Got executor_input:")
    for line in json.dumps(EXECUTOR_INPUT, indent=4).splitlines():
        print("    " + line)
    print(bar, end="")
    for step in (50, 100):
        print(
            f"    convnext/fold1 epoch 2/6 step {step}/200 (25%): loss 1.2, lr 1.00e-03, 80.0 img/s, ETA 1m00s"
        )
    print(
        '    {"epoch": 1, "train_loss": 1.0, "val_logloss": 0.912, "val_logloss_raw": 4.78, "val_accuracy": 0.7}'
    )
    for _ in range(2):  # said twice, shown once
        print(
            "    [KFP Executor 2026-12-07 04:12:00,000 WARNING]: MLflow http://x unavailable during log_metrics"
        )
    logging.info("Task \x1b[96m'train'\x1b[0m finished with status \x1b[92mSUCCESS\x1b[0m")


def test_a_line_per_task_and_every_output_in_its_log(tmp_path):
    out = io.StringIO()
    logs = tmp_path / "logs"
    with TaskConsole(logs, out=out) as console:
        logging.info("Task preprocess cache hit (key=abc123); skipping execution.")
        worker = threading.Thread(
            target=_train_task, args=("    validating:  10%|#   | 1/10\r    validating: 100%|",)
        )
        worker.start()
        worker.join()
        print("[finegrain] printed by the main thread")
    shown = out.getvalue().splitlines()
    assert len(shown) <= 7, shown
    text = "\n".join(shown)
    assert "[finegrain] preprocess: reused from the kfp.local cache" in text
    assert "[finegrain] train convnext/fold1: finished in 0 s (started at 00:00)" in text
    assert text.count("MLflow http://x unavailable") == 1 and "[finegrain] printed by the main thread" in text
    assert "Got executor_input" not in text and "step 50/200" not in text  # in the log, not here
    (log,) = logs.glob("*.log")
    assert log.name == "01-train-convnext-fold1.log"
    assert '"backbone": "convnext"' in log.read_text() and "step 100/200" in log.read_text()
    assert console.ran == {"train": 1} and console.cached == {"preprocess": 1}


def test_verbose_shows_everything_and_writes_no_logs(tmp_path, capsys):
    with TaskConsole(tmp_path / "logs", verbose=True):
        worker = threading.Thread(target=_train_task, args=("",))
        worker.start()
        worker.join()
    assert "Got executor_input" in capsys.readouterr().out and not (tmp_path / "logs").exists()


def test_a_failed_task_shows_its_log_tail(tmp_path):
    out = io.StringIO()

    def failing() -> None:
        logging.info("Executing task 'submit'")
        print("Traceback (most recent call last):\nValueError: the sample submission has 3 columns")
        logging.info("Task 'submit' finished with status FAILURE")

    with TaskConsole(tmp_path / "logs", out=out) as console:
        worker = threading.Thread(target=failing)
        worker.start()
        worker.join()
    text = out.getvalue()
    assert "submit: FAILED after" in text and "01-submit.log" in text
    assert "ValueError: the sample submission has 3 columns" in text and [t.name for t in console.failed] == [
        "submit"
    ]


def test_kfp_local_noise_is_not_shown(tmp_path, capsys):
    import warnings

    out = io.StringIO()
    with TaskConsole(tmp_path / "logs", out=out):
        print("-" * 80)  # kfp.local's separator, printed by its main thread
        warnings.warn("Task 'train': settings ['cpu_limit'] have no effect in the current local runner and will be "
                      "ignored.", UserWarning, stacklevel=1)  # fmt: skip
    assert out.getvalue().count("\n") == 1  # only the line that says where the task logs are
    assert "have no effect" not in capsys.readouterr().err


def test_at_a_terminal_the_progress_line_is_redrawn_in_place(tmp_path):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Terminal()
    with TaskConsole(tmp_path / "logs", out=out):
        worker = threading.Thread(target=_train_task, args=("    validating:  40%|####  | 4/10",))
        worker.start()
        worker.join()
    text = out.getvalue()
    assert "\r[finegrain] 00:00 running: train convnext/fold1 epoch 2/6 50%" in text  # the step line, read
    # then the epoch record, headline first (the raw LogLoss after it is cut at this 80-column terminal)
    assert "running: train convnext/fold1 epoch 2 done, val LogLoss 0.912" in text
    assert text.count("\n") <= 4  # the progress line never adds a line of its own


def _kfp_record(level: int, msg: str) -> None:
    """A log record as kfp.local's own modules make them (their path is how the console knows them)."""
    record = logging.makeLogRecord({"msg": msg, "levelno": level, "levelname": logging.getLevelName(level),
                                    "pathname": "/venv/site-packages/kfp/local/task_dispatcher.py",
                                    "thread": threading.get_ident()})  # fmt: skip
    logging.getLogger().handle(record)


def test_a_retried_task_says_so_once(tmp_path):
    out = io.StringIO()

    def failing_then_retried() -> None:
        logging.info("Executing task 'train'")
        print("    [KFP Executor 2026-12-07 04:10:14,769 INFO]: Got executor_input:")
        for line in json.dumps(EXECUTOR_INPUT, indent=4).splitlines():
            print("    " + line)
        _kfp_record(logging.ERROR, "Task 'train' finished with status FAILURE")
        _kfp_record(logging.INFO, "Task train failed (attempt 1/4). Retrying in 60.0s...")

    with TaskConsole(tmp_path / "logs", out=out):
        worker = threading.Thread(target=failing_then_retried)
        worker.start()
        worker.join()
    text = out.getvalue()
    assert "train convnext/fold1: FAILED after" in text
    assert "[finegrain] train convnext/fold1: attempt 1 of 4 failed; kfp.local retries in 60 s" in text
    assert text.count("FAILURE") == 0  # kfp.local's own error record is not repeated, it is in the task's log
    assert (
        "ERROR Task 'train' finished with status FAILURE"
        in next((tmp_path / "logs").glob("*.log")).read_text()
    )


def test_the_epoch_progress_says_which_logloss_is_which(tmp_path):
    task = _Task("train", tmp_path, 1)
    task.progress_from('{"epoch": 1, "val_logloss": 0.912, "val_logloss_raw": 4.78, "val_accuracy": 0.7}')
    assert task.progress == "epoch 2 done, val LogLoss 0.912 (raw 4.780)"
    task.progress_from('{"epoch": 2, "val_logloss": 0.9}')  # a record from before the raw figure was written
    assert task.progress == "epoch 3 done, val LogLoss 0.900"


def test_the_preprocess_line_says_how_many_near_copies_share_a_fold():
    """A watermarked copy is kept for training next to its original (near_duplicate_action same_fold): the run's
    summary says so in words, and says nothing of it when there is none."""
    from finegrain.orchestration.local import _preprocess_line

    pre = {"status": {"ok": 417, "duplicate": 6, "corrupt": 2}, "dup_groups": 13, "kept_in_one_fold": 2,
           "suggested_merges": 0, "training_rows": 353}  # fmt: skip
    assert _preprocess_line(pre) == (
        "preprocess: 417 ok, 6 duplicate, 2 corrupt; 13 duplicate groups, 2 near copy pairs kept in one fold, "
        "0 suggested merges, 353 training rows"
    )
    assert "kept in one fold" not in _preprocess_line({**pre, "kept_in_one_fold": 0})
    assert "1 near copy pair kept in one fold," in _preprocess_line({**pre, "kept_in_one_fold": 1})
