"""`genlab serve` and `genlab leaderboard` from the command line: results, and one-line errors for bad input."""

from __future__ import annotations

import pytest

from tests.test_cli import assert_one_line_error, run_cli

pytest.importorskip("sqlalchemy", reason="the serve extra is not installed: pip install 'genlab[serve]'")


def test_leaderboard_command(tmp_path, capsys) -> None:
    from genlab.serve.store import Store

    db = tmp_path / "ratings.sqlite"
    store = Store(str(db))
    a = store.add_sample(source="model", run="good", seed=1, label=None, options={}, mime="image/png", content=b"")
    b = store.add_sample(source="model", run="bad", seed=2, label=None, options={}, mime="image/png", content=b"")
    for k in range(30):
        left_good = k % 2 == 0
        pid = store.add_pair(a if left_good else b, b if left_good else a, left_run="good" if left_good else "bad",
                             right_run="bad" if left_good else "good")
        store.vote(pid, ("a" if left_good else "b") if k % 5 else "tie", rater="r", key=f"cli-key-{k:03d}")
    store.close()
    code, out, err = run_cli(["leaderboard", "--db", db, "--rounds", "100"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert any("good" in ln for ln in lines) and "position bias" in out and "95 % interval" in out
    assert out.index("good") < out.index("bad")  # best first
    code, out, err = run_cli(["leaderboard", "--db", db, "--rounds", "0", "--json"], capsys)
    assert code == 0 and '"models"' in out
    code, _, err = run_cli(["leaderboard", "--db", tmp_path / "missing.sqlite"], capsys)
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(["leaderboard", "--db", db, "--anchor", "nope"], capsys)
    assert_one_line_error(code, err, "--anchor")


def test_serve_refuses_bad_starts(served_runs, tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("GENLAB_API_KEY", raising=False)
    run = served_runs["vae"]
    code, _, err = run_cli(["serve", run, "--host", "0.0.0.0", "--db", tmp_path / "r.sqlite"], capsys)
    assert_one_line_error(code, err, "refusing to bind 0.0.0.0")
    code, _, err = run_cli(["serve", tmp_path / "nope", "--db", tmp_path / "r.sqlite"], capsys)
    assert_one_line_error(code, err)
    code, _, err = run_cli(["serve", run, "--drift-options", "{bad"], capsys)
    assert_one_line_error(code, err, "--drift-options")
    code, _, err = run_cli(["serve", run, "--db", tmp_path / "missing" / "r.sqlite"], capsys)
    assert_one_line_error(code, err, "does not exist")
    monkeypatch.setenv("GENLAB_API_KEY", "short")
    code, _, err = run_cli(["serve", run, "--db", tmp_path / "r.sqlite"], capsys)
    assert_one_line_error(code, err, "GENLAB_API_KEY")
