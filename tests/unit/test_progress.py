"""Progress lines for logs: rate-limited, with rate and ETA, on stderr (stdout carries the JSON summary)."""

import io
import re
import subprocess
import sys
import time

from kdflow.progress import Ticker, plain_lines


def test_ticker_lines_are_rate_limited_with_rate_and_eta():
    out = io.StringIO()
    t = Ticker("prepare", total=1000, every=3600, enabled=True, stream=out)
    for _ in range(10):
        t.update(50)
    assert out.getvalue() == ""  # within the interval: nothing
    t.interval = 0.05
    time.sleep(0.06)
    t.update(100, "skipped 0")
    line = out.getvalue().strip()
    assert re.fullmatch(r"kdflow prepare: 600/1,000 samples 60%  [\d,]+ samples/s  ETA \d+m\d\ds  skipped 0", line)
    t.finish()
    assert out.getvalue().strip().splitlines()[-1].endswith("done")
    quiet = io.StringIO()
    Ticker("x", enabled=False, every=0, stream=quiet).update(5)
    assert quiet.getvalue() == ""


def test_plain_lines_follow_the_terminal_and_the_override(monkeypatch):
    monkeypatch.delenv("KDFLOW_PROGRESS", raising=False)
    assert plain_lines() is not sys.stdout.isatty()
    monkeypatch.setenv("KDFLOW_PROGRESS", "off")
    assert plain_lines() is False
    code = "from kdflow.progress import plain_lines; print(plain_lines())"
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           env={**__import__("os").environ, "KDFLOW_PROGRESS": ""})
    assert piped.stdout.strip() == "True"  # stdout is a pipe: plain lines


def test_training_prints_epoch_step_rate_eta_and_val_metrics(tmp_path, prepared, monkeypatch, capsys):
    from kdflow.stages import train_teacher
    from tests.helpers import tiny_cfg

    monkeypatch.setenv("KDFLOW_PROGRESS", "lines")
    monkeypatch.setenv("KDFLOW_PROGRESS_SECONDS", "0")
    cfg = tiny_cfg(teacher__train__progress_bar=True, teacher__train__epochs=2)
    train_teacher.run(cfg, {"data": prepared}, {"model": tmp_path / "t", "checkpoints": tmp_path / "ck"})
    captured = capsys.readouterr()
    lines = [ln for ln in captured.err.splitlines() if ln.startswith("kdflow train_teacher:")]
    assert not [ln for ln in captured.out.splitlines() if ln.startswith("kdflow ")]  # stdout stays clean
    step = [ln for ln in lines if " step " in ln]
    assert step and re.search(r"epoch 1/2 step \d+/\d+  [\d,]+ samples/s  ETA \d+m\d\ds", step[0])
    assert re.search(r"epoch 2/2 .*val_acc=\d\.\d{4}  val_loss=\d", lines[-1]) and lines[-1].endswith("done")


def test_rich_bar_redraws_at_most_every_interval_and_on_the_last_batch(monkeypatch):
    from lightning.pytorch.callbacks import RichProgressBar

    from kdflow.lit import progress

    monkeypatch.setattr(progress, "plain_lines", lambda: False)
    drawn = []
    monkeypatch.setattr(RichProgressBar, "on_train_batch_end", lambda self, *a: drawn.append(a[-1]))
    monkeypatch.setattr(RichProgressBar, "total_train_batches", property(lambda self: 100))
    (bar,) = progress.progress_callbacks("distill", True)
    assert isinstance(bar, RichProgressBar)
    for i in range(100):
        bar.on_train_batch_end(None, None, None, None, i)
    assert drawn[0] == 0 and drawn[-1] == 99 and len(drawn) < 10  # 100 batches in far less than 0.25 s each
