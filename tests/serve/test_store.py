"""The ratings store on SQLite (always, WAL mode) and on a local PostgreSQL server (when one can be started):
votes are stored once per idempotency key, a pair takes one vote, concurrent retries never double count."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from genlab.errors import ConfigError

pytest.importorskip("sqlalchemy", reason="the serve extra is not installed: pip install 'genlab[serve]'")

from genlab.serve.store import NotFound, Store, VoteConflict, database_url


def pg_bin(name: str) -> str | None:
    """A PostgreSQL server binary (Debian keeps them under /usr/lib/postgresql/N/bin)."""
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(found[-1]) if found else shutil.which(name)


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throw-away PostgreSQL server on a Unix socket in a temporary folder (no TCP), or a skip with the reason."""
    initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("no PostgreSQL server binaries (apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed")
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="genlab-pg-"))  # beside pytest's folder, which the postgres user cannot enter
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    prefix: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as the postgres user
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as another user")
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user")
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
        os.chmod(root, 0o755)
        prefix = ["runuser", "-u", "postgres", "--"]
    init = subprocess.run([*prefix, initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                          capture_output=True, text=True, timeout=60)
    if init.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {init.stderr.strip().splitlines()[-1:]}")
    with socket.socket() as s:  # a free port number for the socket's name; TCP stays off
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    opts = f"-k {sock} -p {port} -c listen_addresses='' -c fsync=off"
    start = subprocess.run([*prefix, pg_ctl, "-D", str(data), "-o", opts, "-l", str(root / "log"), "-w", "start"],
                           capture_output=True, text=True, timeout=60)
    if start.returncode != 0:
        pytest.skip(f"PostgreSQL did not start: {start.stderr.strip()[-200:]}")
    try:
        yield f"postgresql://postgres@/postgres?host={sock}&port={port}"
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def exercise(store: Store) -> None:
    """What every backend must do."""
    a = store.add_sample(source="model", run="vae", seed=1, label=3, options={"steps": 4}, mime="image/png",
                         content=b"png-a")
    b = store.add_sample(source="model", run="gan", seed=2, label=3, options={}, mime="image/png", content=b"png-b")
    pid = store.add_pair(a, b, left_run="vae", right_run="gan", rater="r1")
    assert store.pair(pid)["left_run"] == "vae"
    assert store.sample(a)["options"] == {"steps": 4} and store.sample(a)["content"] == b"png-a"
    v = store.vote(pid, "a", rater="r1", key="key-000001", decision_ms=1234)
    assert not v.duplicate
    again = store.vote(pid, "a", rater="r1", key="key-000001", decision_ms=1234)
    assert again.duplicate and again.id == v.id  # a retried POST
    with pytest.raises(VoteConflict, match="already has a vote"):
        store.vote(pid, "b", rater="r1", key="key-000002")
    pid2 = store.add_pair(b, a, left_run="gan", right_run="vae")
    with pytest.raises(VoteConflict, match="another pair"):
        store.vote(pid2, "b", rater="r1", key="key-000001")
    with pytest.raises(NotFound):
        store.vote("nope", "a", rater="r1", key="key-000003")
    with pytest.raises(ConfigError, match="choice"):
        store.vote(pid2, "left", rater="r1", key="key-000004")
    gold = store.add_pair(a, b, left_run=None, right_run=None, gold=True, gold_answer="b")
    assert store.vote(gold, "a", rater="r2", key="key-gold-01").duplicate is False
    # many threads retrying the same votes at once: each pair counted exactly once
    pairs = [store.add_pair(a, b, left_run="vae", right_run="gan") for _ in range(10)]
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            for k, p in enumerate(pairs):
                store.vote(p, "tie", rater="r3", key=f"key-thread-{k:03d}")
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    votes = store.all_votes()
    assert len(votes) == store.count_votes() == 12
    g = next(v for v in votes if v["gold"])
    assert g["correct"] is False and g["rater"] == "r2"
    assert next(v for v in votes if v["pair_id"] == pid)["decision_ms"] == 1234


def test_sqlite_store_in_wal_mode(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "r.sqlite"))
    try:
        assert store.journal_mode == "wal"
        exercise(store)
    finally:
        store.close()
    reopened = Store(str(tmp_path / "r.sqlite"))  # votes survive a restart
    assert reopened.count_votes() == 12
    reopened.close()


def test_postgresql_store(postgres: str) -> None:
    t0 = time.time()
    store = Store(postgres)
    try:
        assert store.journal_mode == "postgresql"
        exercise(store)
    finally:
        store.close()
    assert time.time() - t0 < 30


def test_database_urls_and_bad_paths(tmp_path: Path) -> None:
    assert database_url("x.sqlite").startswith("sqlite:///")
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(ConfigError, match="does not exist"):
        Store(str(tmp_path / "missing" / "r.sqlite"))
