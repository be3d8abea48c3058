"""The ratings store: served samples, arena pairs and votes in SQLAlchemy (SQLite in WAL mode by default, any
PostgreSQL URL).

Per vote it keeps the rater's pseudonym, the pair (two sample ids, each with its run, seed and options), which
sample was on which side, the choice, the decision time, the time stamp and an idempotency key: a retried POST with
the same key returns the vote already stored and never counts twice, and a pair takes one vote only.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genlab.errors import ConfigError
from genlab.extras import require

CHOICES = ("a", "b", "tie", "both_bad")  # a = the left sample, b = the right one


class VoteConflict(Exception):
    """A vote that contradicts a stored one (the pair already has a vote, or the key belongs to another pair)."""


class NotFound(Exception):
    """An unknown pair or sample."""


@dataclass(frozen=True)
class Vote:
    """One stored vote (``duplicate``: a retried POST that found it already stored)."""

    id: int
    pair_id: str
    choice: str
    rater: str
    duplicate: bool = False


def database_url(db: str) -> str:
    """An SQLAlchemy URL from a ``--db`` value: a file path becomes SQLite, ``postgresql://`` uses psycopg 3."""
    if "://" not in db:
        return f"sqlite:///{Path(db).expanduser()}"
    if db.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + db.split("://", 1)[1]
    return db


class Store:
    """The ratings database.

    Arguments:
        db: a SQLite file path, or an SQLAlchemy URL (``sqlite:///…``, ``postgresql://user@host/db``).

    Raises:
        ConfigError: when the database cannot be opened or its folder does not exist.
    """

    def __init__(self, db: str) -> None:
        sa = require("sqlalchemy", "serve", "the ratings store")
        self.url = database_url(db)
        self.sa = sa
        if self.url.startswith("sqlite:///") and self.url != "sqlite:///:memory:":
            folder = Path(self.url[len("sqlite:///") :]).parent
            if not folder.is_dir():
                raise ConfigError(f"folder {folder} of --db does not exist; create it or choose another --db")
        if self.url.startswith("postgresql+psycopg"):
            require("psycopg", "serve", "a PostgreSQL ratings store")
        kwargs: dict[str, Any] = {}
        if self.url.startswith("sqlite"):
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        try:
            self.engine = sa.create_engine(self.url, **kwargs)
        except Exception as e:
            raise ConfigError(f"cannot open --db {db} ({str(e).splitlines()[0]})") from None
        if self.url.startswith("sqlite"):
            @sa.event.listens_for(self.engine, "connect")
            def _pragmas(conn: Any, record: Any) -> None:
                cur = conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

        md = sa.MetaData()
        c, T = sa.Column, sa.Table
        self.samples = T("samples", md,
                         c("id", sa.String(32), primary_key=True),
                         c("source", sa.String(16), nullable=False),  # model | real | corrupted
                         c("run", sa.String(200)),
                         c("seed", sa.BigInteger),
                         c("label", sa.Integer),
                         c("options", sa.Text, nullable=False),
                         c("mime", sa.String(100), nullable=False),
                         c("content", sa.LargeBinary),
                         c("created", sa.Float, nullable=False))
        self.pairs = T("pairs", md,
                       c("id", sa.String(32), primary_key=True),
                       c("left_sample", sa.String(32), sa.ForeignKey("samples.id"), nullable=False),
                       c("right_sample", sa.String(32), sa.ForeignKey("samples.id"), nullable=False),
                       c("left_run", sa.String(200)),
                       c("right_run", sa.String(200)),
                       c("gold", sa.Boolean, nullable=False),
                       c("gold_answer", sa.String(8)),  # the side of the real example in a gold pair
                       c("rater", sa.String(100)),
                       c("created", sa.Float, nullable=False))
        self.votes = T("votes", md,
                       c("id", sa.Integer, primary_key=True, autoincrement=True),
                       c("pair_id", sa.String(32), sa.ForeignKey("pairs.id"), nullable=False, unique=True),
                       c("idempotency_key", sa.String(100), nullable=False, unique=True),
                       c("rater", sa.String(100), nullable=False),
                       c("choice", sa.String(8), nullable=False),
                       c("decision_ms", sa.Integer),
                       c("left_run", sa.String(200)),
                       c("right_run", sa.String(200)),
                       c("gold", sa.Boolean, nullable=False),
                       c("correct", sa.Boolean),
                       c("created", sa.Float, nullable=False))
        try:
            md.create_all(self.engine)
        except Exception as e:
            raise ConfigError(f"cannot open --db {db} ({str(e).splitlines()[0]})") from None

    @property
    def journal_mode(self) -> str:
        """SQLite's journal mode (``wal``), or the database dialect's name."""
        if not self.url.startswith("sqlite"):
            return self.engine.dialect.name
        with self.engine.connect() as conn:
            return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())

    def close(self) -> None:
        self.engine.dispose()

    # -- samples and pairs -------------------------------------------------------------------------
    def add_sample(self, *, source: str, run: str | None, seed: int | None, label: int | None,
                   options: Mapping[str, Any], mime: str, content: bytes | None) -> str:
        """Store a sample shown to a rater; returns its id."""
        sid = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(self.samples.insert().values(
                id=sid, source=source, run=run, seed=seed, label=label, options=json.dumps(dict(options),
                                                                                              default=str),
                mime=mime, content=content, created=time.time()))
        return sid

    def add_pair(self, left: str, right: str, *, left_run: str | None, right_run: str | None, gold: bool = False,
                 gold_answer: str | None = None, rater: str | None = None) -> str:
        """Store a pair as shown (``left`` is side a); returns its id."""
        pid = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(self.pairs.insert().values(id=pid, left_sample=left, right_sample=right,
                                                    left_run=left_run, right_run=right_run, gold=gold,
                                                    gold_answer=gold_answer, rater=rater, created=time.time()))
        return pid

    def pair(self, pair_id: str) -> dict[str, Any]:
        """A stored pair.

        Raises:
            NotFound: for an unknown id.
        """
        with self.engine.connect() as conn:
            row = conn.execute(self.pairs.select().where(self.pairs.c.id == pair_id)).mappings().first()
        if row is None:
            raise NotFound(f"unknown pair {pair_id!r}; fetch a new one from /v1/arena/pair")
        return dict(row)

    def sample(self, sample_id: str) -> dict[str, Any]:
        """A stored sample (with its content).

        Raises:
            NotFound: for an unknown id.
        """
        with self.engine.connect() as conn:
            row = conn.execute(self.samples.select().where(self.samples.c.id == sample_id)).mappings().first()
        if row is None:
            raise NotFound(f"unknown sample {sample_id!r}")
        return {**dict(row), "options": json.loads(row["options"])}

    # -- votes ---------------------------------------------------------------------------------------
    def _existing(self, conn: Any, key: str, pair_id: str) -> Vote | None:
        row = conn.execute(self.votes.select().where(self.votes.c.idempotency_key == key)).mappings().first()
        if row is None:
            return None
        if row["pair_id"] != pair_id:
            raise VoteConflict(f"idempotency key {key!r} was used for another pair; use a new key per vote")
        return Vote(row["id"], row["pair_id"], row["choice"], row["rater"], duplicate=True)

    def vote(self, pair_id: str, choice: str, *, rater: str, key: str, decision_ms: int | None = None) -> Vote:
        """Record a vote once.

        Arguments:
            pair_id: the pair voted on.
            choice: ``a`` (left), ``b`` (right), ``tie`` or ``both_bad``.
            rater: the rater's pseudonym.
            key: idempotency key; a retry with the same key returns the stored vote (``duplicate=True``).
            decision_ms: milliseconds from showing the pair to the vote.

        Raises:
            ConfigError: for a bad choice; NotFound for an unknown pair; VoteConflict when the pair already has
                another vote or the key belongs to another pair.
        """
        if choice not in CHOICES:
            raise ConfigError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        sa = self.sa
        pair = self.pair(pair_id)
        correct = None
        if pair["gold"]:
            correct = choice == pair["gold_answer"]
        with self.engine.begin() as conn:
            found = self._existing(conn, key, pair_id)
            if found is not None:
                return found
        try:
            with self.engine.begin() as conn:
                res = conn.execute(self.votes.insert().values(
                    pair_id=pair_id, idempotency_key=key, rater=rater, choice=choice, decision_ms=decision_ms,
                    left_run=pair["left_run"], right_run=pair["right_run"], gold=pair["gold"], correct=correct,
                    created=time.time()))
                vid = int(res.inserted_primary_key[0])
        except sa.exc.IntegrityError:
            with self.engine.begin() as conn:  # a concurrent retry of the same key won, or the pair has a vote
                found = self._existing(conn, key, pair_id)
            if found is not None:
                return found
            raise VoteConflict(f"pair {pair_id} already has a vote; fetch a new pair") from None
        return Vote(vid, pair_id, choice, rater)

    def count_votes(self) -> int:
        """Votes stored."""
        with self.engine.connect() as conn:
            return int(conn.execute(self.sa.select(self.sa.func.count()).select_from(self.votes)).scalar() or 0)

    def all_votes(self) -> list[dict[str, Any]]:
        """Every vote: rater, runs, choice, gold, correct, decision time, time stamp."""
        v = self.votes.c
        with self.engine.connect() as conn:
            rows = conn.execute(self.sa.select(v.id, v.pair_id, v.rater, v.left_run, v.right_run, v.choice, v.gold,
                                               v.correct, v.decision_ms, v.created).order_by(v.id)).mappings()
            return [dict(r) for r in rows]
