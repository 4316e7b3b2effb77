"""Benchmark datasets, written with set-based SQL straight into the tables.

Every row is computed from its position and the seed, so a dataset is the same on every run
and loads in seconds: each table is one ``INSERT … SELECT … FROM generate_series`` statement.
Primary keys are computed too (the sequences are moved past them at the end), which lets one
statement find the rows another wrote without a lookup.

Layout of a dataset with A administrative occurrences and C clients per occurrence:

- qualifications ``Q = min(A, 10)``, each a programme of ``SESSIONS * UNITS_PER_SESSION`` units;
  each qualification also has one session programme per session, carrying that session's units;
- administrative occurrence ``a`` delivers qualification ``a % Q``, and has one session
  occurrence per session programme, inside its dates;
- every client is enrolled in one administrative occurrence and in its session occurrences,
  each session enrolment actively linked to the administrative enrolment;
- every session result is recorded; every administrative result is rolled up from the one
  session result for its unit, as the roll-up writes it (source ``ROLLED_UP``, outcome, dates
  and recorded time of the session result, ``source_enrolled_unit_id`` set).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg

SESSIONS = 4
UNITS_PER_SESSION = 3
UNITS_PER_QUALIFICATION = SESSIONS * UNITS_PER_SESSION


@dataclass(frozen=True)
class Dataset:
    name: str
    administrative_occurrences: int
    clients_per_occurrence: int
    seed: int = 20_250_203

    @property
    def qualifications(self) -> int:
        return min(self.administrative_occurrences, 10)

    @property
    def clients(self) -> int:
        return self.administrative_occurrences * self.clients_per_occurrence

    @property
    def enrolled_units(self) -> int:
        return self.clients * UNITS_PER_QUALIFICATION * 2


DATASETS = {
    dataset.name: dataset
    for dataset in (
        Dataset("bench-500", administrative_occurrences=1, clients_per_occurrence=500),
        Dataset("bench-large", administrative_occurrences=100, clients_per_occurrence=200),
    )
}


def _statements(dataset: Dataset) -> list[tuple[str, str]]:
    """Return (label, SQL) pairs that write the dataset, in foreign-key order."""
    q = dataset.qualifications
    a = dataset.administrative_occurrences
    c = dataset.clients_per_occurrence
    s = SESSIONS
    u = UNITS_PER_SESSION
    n = UNITS_PER_QUALIFICATION
    seed = dataset.seed
    clients = a * c
    # Id offsets of session rows, placed after every administrative row of the same table.
    session_programme_base = q
    session_occurrence_base = a
    session_enrolment_base = clients
    session_result_base = clients * n

    # A deterministic pseudo-random number in 0..99 for row i: Knuth's multiplicative hash.
    def mix(i: str) -> str:
        return f"(((({i})::bigint * 2654435761 + {seed} * 97) % 4294967296) % 100)::int"

    return [
        (
            "units",
            f"""
            INSERT INTO units (id, code, title, nominal_hours)
            SELECT i + 1, 'BNCH' || lpad(i::text, 5, '0'),
                   'Benchmark unit ' || (i / {n} + 1) || '.' || (i % {n} + 1),
                   CASE WHEN i % 5 = 4 THEN NULL ELSE 20 + (i % 7) * 10 END
            FROM generate_series(0, {q * n - 1}) AS i
            """,
        ),
        (
            "programmes",
            f"""
            INSERT INTO programmes (id, code, name)
            SELECT p + 1, 'BQ' || lpad(p::text, 3, '0'), 'Benchmark qualification ' || (p + 1)
            FROM generate_series(0, {q - 1}) AS p
            UNION ALL
            SELECT {session_programme_base} + p * {s} + k + 1,
                   'BQ' || lpad(p::text, 3, '0') || 'S' || (k + 1),
                   'Benchmark qualification ' || (p + 1) || ', session ' || (k + 1)
            FROM generate_series(0, {q - 1}) AS p, generate_series(0, {s - 1}) AS k
            """,
        ),
        (
            "programme units",
            f"""
            INSERT INTO programme_units (programme_id, unit_id, position)
            SELECT p + 1, p * {n} + j + 1, j
            FROM generate_series(0, {q - 1}) AS p, generate_series(0, {n - 1}) AS j
            UNION ALL
            SELECT {session_programme_base} + p * {s} + j / {u} + 1, p * {n} + j + 1, j % {u}
            FROM generate_series(0, {q - 1}) AS p, generate_series(0, {n - 1}) AS j
            """,
        ),
        (
            "occurrences",
            f"""
            INSERT INTO occurrences
                (id, programme_id, code, name, kind, start_date, end_date, location, fee)
            SELECT o + 1, o % {q} + 1, 'BA' || lpad(o::text, 4, '0'),
                   'Benchmark intake ' || (o + 1), 'ADMINISTRATIVE',
                   DATE '2025-02-03' + (o % 10) * 7, DATE '2025-02-03' + (o % 10) * 7 + 364,
                   'Campus ' || (o % 3 + 1), 4500.00
            FROM generate_series(0, {a - 1}) AS o
            UNION ALL
            SELECT {session_occurrence_base} + o * {s} + k + 1,
                   {session_programme_base} + (o % {q}) * {s} + k + 1,
                   'BA' || lpad(o::text, 4, '0') || 'S' || (k + 1),
                   'Benchmark intake ' || (o + 1) || ', session ' || (k + 1), 'SESSION',
                   DATE '2025-02-03' + (o % 10) * 7 + k * 84,
                   DATE '2025-02-03' + (o % 10) * 7 + k * 84 + 83,
                   'Campus ' || (o % 3 + 1), NULL
            FROM generate_series(0, {a - 1}) AS o, generate_series(0, {s - 1}) AS k
            """,
        ),
        (
            "occurrence units",
            f"""
            INSERT INTO occurrence_units (occurrence_id, unit_id, position)
            SELECT o + 1, (o % {q}) * {n} + j + 1, j
            FROM generate_series(0, {a - 1}) AS o, generate_series(0, {n - 1}) AS j
            UNION ALL
            SELECT {session_occurrence_base} + o * {s} + j / {u} + 1, (o % {q}) * {n} + j + 1,
                   j % {u}
            FROM generate_series(0, {a - 1}) AS o, generate_series(0, {n - 1}) AS j
            """,
        ),
        (
            "clients",
            f"""
            INSERT INTO clients (id, client_code, given_name, surname, date_of_birth, email)
            SELECT i + 1, 'B' || lpad(i::text, 7, '0'),
                   (ARRAY['Ava','Noah','Mia','Jack','Zoe','Liam','Isla','Leo'])[{mix("i")} % 8 + 1],
                   (ARRAY['Nguyen','Smith','Kaur','Brown','Wilson','Tran','Taylor','Lee'])
                       [{mix("i + 7")} % 8 + 1] || ' ' || (i + 1),
                   DATE '1980-01-01' + ({mix("i + 3")} * 97 + i) % 9000,
                   'learner' || (i + 1) || '@example.org'
            FROM generate_series(0, {clients - 1}) AS i
            """,
        ),
        (
            "enrolments",
            f"""
            INSERT INTO enrolments (id, client_id, occurrence_id, status, start_date, end_date,
                                    roll_up_version, roll_up_computed_version,
                                    roll_up_computed_at)
            SELECT i + 1, i + 1, o.id, 'ACTIVE', o.start_date, o.end_date, 1, 1,
                   TIMESTAMPTZ '2025-12-01 02:00:00+00' + i * INTERVAL '1.25 second'
            FROM generate_series(0, {clients - 1}) AS i
            JOIN occurrences o ON o.id = i / {c} + 1
            UNION ALL
            SELECT {session_enrolment_base} + i * {s} + k + 1, i + 1, o.id, 'ACTIVE',
                   o.start_date, o.end_date, 0, 0, NULL
            FROM generate_series(0, {clients - 1}) AS i
            CROSS JOIN generate_series(0, {s - 1}) AS k
            JOIN occurrences o ON o.id = {session_occurrence_base} + (i / {c}) * {s} + k + 1
            """,
        ),
        (
            "links",
            f"""
            INSERT INTO enrolment_links
                (id, administrative_enrolment_id, session_enrolment_id, linked_at, linked_by)
            SELECT i * {s} + k + 1, i + 1, {session_enrolment_base} + i * {s} + k + 1,
                   TIMESTAMPTZ '2025-01-20 00:00:00+00' + (i * {s} + k) * INTERVAL '1 second',
                   'bench'
            FROM generate_series(0, {clients - 1}) AS i, generate_series(0, {s - 1}) AS k
            """,
        ),
        (
            "session results",
            # Outcomes: 80% competency achieved, 8% not achieved, 6% continuing (not final),
            # 3% RPL granted, 3% credit transfer; recorded times carry microseconds except on
            # every tenth row, so both of DateTime's printed forms occur.
            f"""
            INSERT INTO enrolled_units (id, enrolment_id, unit_id, outcome, start_date, end_date,
                                        source, recorded_at, recorded_by)
            SELECT {session_result_base} + (i * {s} + k) * {u} + m + 1,
                   {session_enrolment_base} + i * {s} + k + 1,
                   ((i / {c}) % {q}) * {n} + k * {u} + m + 1,
                   CASE WHEN h < 80 THEN 20 WHEN h < 88 THEN 30 WHEN h < 94 THEN 70
                        WHEN h < 97 THEN 51 ELSE 60 END,
                   o.start_date + m * 21, o.start_date + m * 21 + 20, 'RECORDED',
                   TIMESTAMPTZ '2025-06-01 09:00:00+00'
                       + ((i * {s} + k) * {u} + m) * INTERVAL '37 second'
                       + CASE WHEN m % 10 = 0 THEN INTERVAL '0'
                              ELSE h * INTERVAL '1013 microsecond' END,
                   'trainer' || (h % 9 + 1)
            FROM generate_series(0, {clients - 1}) AS i, generate_series(0, {s - 1}) AS k,
                 generate_series(0, {u - 1}) AS m,
                 LATERAL (SELECT {mix(f"(i * {s} + k) * {u} + m")} AS h) AS random,
                 LATERAL (SELECT start_date FROM occurrences
                          WHERE id = {session_occurrence_base} + (i / {c}) * {s} + k + 1) AS o
            """,
        ),
        (
            "administrative results",
            f"""
            INSERT INTO enrolled_units (id, enrolment_id, unit_id, outcome, start_date, end_date,
                                        source, source_enrolled_unit_id, recorded_at,
                                        recorded_by)
            SELECT i * {n} + j + 1, i + 1, r.unit_id, r.outcome, r.start_date, r.end_date,
                   'ROLLED_UP', r.id, r.recorded_at, NULL
            FROM generate_series(0, {clients - 1}) AS i
            CROSS JOIN generate_series(0, {n - 1}) AS j
            JOIN enrolled_units r
              ON r.id = {session_result_base} + (i * {s} + j / {u}) * {u} + j % {u} + 1
            """,
        ),
    ]


_SEQUENCES = (
    "units",
    "programmes",
    "occurrences",
    "clients",
    "enrolments",
    "enrolled_units",
    "enrolment_links",
)


async def load(url: str, dataset: Dataset, *, progress: bool = True) -> None:
    """Write ``dataset`` into the empty, migrated database at ``url`` in one transaction."""
    started = time.perf_counter()
    connection = await asyncpg.connect(url)
    try:
        async with connection.transaction():
            for label, statement in _statements(dataset):
                step_started = time.perf_counter()
                status = await connection.execute(statement)
                if progress:
                    rows = status.rsplit(" ", 1)[-1]
                    elapsed = time.perf_counter() - step_started
                    print(f"  {dataset.name}: {label:<24} {int(rows):>9,} rows {elapsed:6.2f} s")
            for table in _SEQUENCES:
                await connection.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                    f"(SELECT max(id) FROM {table}))"
                )
        # Fresh statistics, so the planner knows the real table sizes before the first measurement.
        await connection.execute("ANALYZE")
    finally:
        await connection.close()
    if progress:
        print(f"  {dataset.name}: loaded in {time.perf_counter() - started:.2f} s")
