"""The service's tables, one schema for SQLite and PostgreSQL, and their migrations.

They sit in the same database as the checkpoints, so a run, its thread and its steps live
and die together. Every row that a tenant owns carries its tenant; times are epoch
seconds. Runs are a queue: a worker claims a pending run with a lease that it renews, so
a run whose worker died is found and taken over (by the same process on restart here;
by other processes once workers run on several machines).
"""

from __future__ import annotations

import time

from .db import Database, Tx

_TYPES = {
    "sqlite": {"json": "TEXT", "real": "REAL", "bool": "INTEGER", "blob": "BLOB"},
    "postgres": {"json": "JSONB", "real": "DOUBLE PRECISION", "bool": "BOOLEAN",
                 "blob": "BYTEA"},
}

# Each migration runs once, in order, in one transaction; versions are recorded.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (1, """
        CREATE TABLE waypoint_assistants (
            assistant_id TEXT PRIMARY KEY,
            tenant TEXT,
            graph_id TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            config {json} NOT NULL,
            context {json} NOT NULL,
            metadata {json} NOT NULL,
            version INTEGER NOT NULL,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        );
        CREATE INDEX waypoint_assistants_tenant ON waypoint_assistants (tenant, created_at);
        CREATE TABLE waypoint_assistant_versions (
            assistant_id TEXT NOT NULL,
            version INTEGER NOT NULL,
            graph_id TEXT NOT NULL,
            name TEXT NOT NULL,
            description TEXT,
            config {json} NOT NULL,
            context {json} NOT NULL,
            metadata {json} NOT NULL,
            created_at {real} NOT NULL,
            PRIMARY KEY (assistant_id, version)
        );
        CREATE TABLE waypoint_service_threads (
            thread_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            state_updated_at {real} NOT NULL,
            metadata {json} NOT NULL,
            config {json} NOT NULL,
            status TEXT NOT NULL,
            state_values {json},
            interrupts {json} NOT NULL,
            error {json},
            ttl_minutes {real},
            ttl_strategy TEXT
        );
        CREATE INDEX waypoint_service_threads_tenant
            ON waypoint_service_threads (tenant, created_at);
        CREATE TABLE waypoint_runs (
            run_id TEXT PRIMARY KEY,
            thread_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            assistant_id TEXT NOT NULL,
            graph_id TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL,
            not_before {real} NOT NULL,
            metadata {json} NOT NULL,
            kwargs {json} NOT NULL,
            multitask_strategy TEXT NOT NULL,
            temporary {bool} NOT NULL,
            attempt INTEGER NOT NULL,
            worker TEXT,
            lease_until {real},
            start_head TEXT,
            cancel_action TEXT,
            error {json}
        );
        CREATE INDEX waypoint_runs_thread ON waypoint_runs (thread_id, created_at);
        CREATE INDEX waypoint_runs_queue ON waypoint_runs (status, not_before);
        CREATE TABLE waypoint_run_events (
            run_id TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            event TEXT NOT NULL,
            data {blob} NOT NULL,
            created_at {real} NOT NULL,
            PRIMARY KEY (run_id, attempt, seq)
        );
        CREATE TABLE waypoint_crons (
            cron_id TEXT PRIMARY KEY,
            tenant TEXT NOT NULL,
            assistant_id TEXT NOT NULL,
            thread_id TEXT,
            schedule TEXT NOT NULL,
            timezone TEXT,
            end_time {real},
            payload {json} NOT NULL,
            metadata {json} NOT NULL,
            user_id TEXT,
            enabled {bool} NOT NULL,
            on_run_completed TEXT NOT NULL,
            next_run_date {real},
            created_at {real} NOT NULL,
            updated_at {real} NOT NULL
        );
        CREATE INDEX waypoint_crons_due ON waypoint_crons (enabled, next_run_date);
    """),
    # Finished stateless runs whose temporary thread is to be deleted, found by the reaper.
    (2, """
        CREATE INDEX waypoint_runs_temporary ON waypoint_runs (temporary, status);
    """),
    # A run knows whether its input was applied from its checkpoints' run id, not a column.
    (3, """
        ALTER TABLE waypoint_runs DROP COLUMN start_head;
    """),
    # How often a run was taken back from a worker that died: poison runs stop at a limit.
    (4, """
        ALTER TABLE waypoint_runs ADD COLUMN takeovers INTEGER NOT NULL DEFAULT 0;
    """),
    # Priority and fair claims across tenants; runs pinned to the graph version they
    # started on (NULL until their first claim).
    (5, """
        ALTER TABLE waypoint_runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE waypoint_runs ADD COLUMN graph_version TEXT;
        CREATE INDEX waypoint_runs_tenant_status ON waypoint_runs (tenant, status);
    """),
    # Chores done once per period across all processes (tables/duties.py).
    (6, """
        CREATE TABLE waypoint_duties (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            until {real} NOT NULL
        );
    """),
)


def _statements(dialect: str, script: str) -> list[str]:
    text = script.format(**_TYPES[dialect])
    return [s.strip() for s in text.split(";") if s.strip()]


def migrate(db: Database) -> None:
    """Create or upgrade the tables; safe to run from several processes at once."""

    def apply(tx: Tx) -> None:
        if tx.dialect == "postgres":  # one migrator at a time across processes
            tx.execute("SELECT pg_advisory_xact_lock(7243001)")
        tx.execute("CREATE TABLE IF NOT EXISTS waypoint_service_migrations ("
                   " version INTEGER PRIMARY KEY, applied_at " + _TYPES[tx.dialect]["real"]
                   + " NOT NULL)")
        done = {row[0] for row in tx.all("SELECT version FROM waypoint_service_migrations")}
        for version, script in MIGRATIONS:
            if version in done:
                continue
            for statement in _statements(tx.dialect, script):
                tx.execute(statement)
            tx.execute("INSERT INTO waypoint_service_migrations VALUES (?, ?)",
                       (version, time.time()))

    db.run(apply)
