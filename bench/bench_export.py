"""Export throughput on PostgreSQL: `database.export` against `psql \\copy`.

    .venv/bin/python bench/bench_export.py [--rows 200000] [--repeat 3]

Builds a throw-away database `cutover_bench_<pid>` on 127.0.0.1:5432 (user postgres)
with one contributions-like table, exports it with our step (COPY through
psycopg 3), with `psql \\copy`, and, for reference, with the generic path the
other dialects use (server-side cursor + Python CSV formatting). Prints the best
of `--repeat` runs of each and the ratios. Without a PostgreSQL server it says so
and exits 0.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pendulum  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from cutover.clock import RehearsalClock  # noqa: E402
from cutover.profile import DatabaseEndpoint, Profile, Target  # noqa: E402
from cutover.steps import StepContext  # noqa: E402
from tasks import _db  # noqa: E402
from tasks.database import Export, export  # noqa: E402

PSQL = "psql \\copy"
ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SELECT = "SELECT id, person_id, insurance_type, period, amount_cents, paid_on, city, note " \
         "FROM contributions ORDER BY id"


class _Facts(dict):
    def put(self, name: str, value: object) -> None:
        self[name] = value


def best_of(repeat: int, run: Callable[[int], Path]) -> tuple[float, Path]:
    times, out = [], Path()
    for attempt in range(repeat):
        start = time.perf_counter()
        out = run(attempt)
        times.append(time.perf_counter() - start)
    return min(times), out


def build(conn: sa.Connection, rows: int) -> None:
    _db.run_sql(conn,
        "CREATE TABLE contributions (id bigint PRIMARY KEY, person_id bigint NOT NULL, "
        "insurance_type text NOT NULL, period text NOT NULL, amount_cents bigint NOT NULL, "
        "paid_on date, city text NOT NULL, note text)")
    _db.run_sql(conn,
        "INSERT INTO contributions SELECT g, g % 50000, "
        "(ARRAY['enterprise_pension','public_pension','urban_rural_resident','unemployment',"
        "'work_injury'])[g % 5 + 1], '2023-' || lpad((g % 12 + 1)::text, 2, '0'), "
        "(g * 37) % 100000, date '2023-01-01' + (g % 300), "
        "(ARRAY['Taiyuan','Datong','Yangquan','Changzhi','Jincheng','Shuozhou','Jinzhong',"
        f"'Yuncheng','Xinzhou','Linfen','Lvliang'])[g % 11 + 1], "
        f"CASE WHEN g % 10 = 0 THEN 'late, \"manual\" entry' END "
        f"FROM generate_series(1, {rows}) g")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT", poolclass=NullPool,
                             connect_args={"connect_timeout": 3})
    try:
        admin_conn = admin.connect()
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL not reachable at 127.0.0.1:5432, skipping: {_db.one_line(exc)}")
        return 0
    name = f"cutover_bench_{__import__('os').getpid()}"
    url = sa.make_url(ADMIN).set(database=name)
    work = Path(tempfile.mkdtemp(prefix="bench_export_"))
    admin_conn.exec_driver_sql(f"CREATE DATABASE {name}")
    try:
        engine = sa.create_engine(url, poolclass=NullPool)
        with engine.begin() as conn:
            build(conn, args.rows)
        with engine.connect() as conn:  # VACUUM refuses to run inside a transaction
            _db.run_sql(conn.execution_options(isolation_level="AUTOCOMMIT"),
                        "VACUUM ANALYZE contributions")
        ctx = StepContext(
            execution_id="bench", step_id="export",
            profile=Profile(name="bench", targets={"db": Target(database=DatabaseEndpoint(
                url=url.render_as_string(hide_password=False)))}),
            clock=RehearsalClock(pendulum.now("Asia/Shanghai")), workdir=work, facts=_Facts())

        def ours(attempt: int) -> Path:
            export(Export(target="db", batch=f"run{attempt}", tables=["contributions"]), ctx)
            return work / "exports" / f"run{attempt}" / "contributions.csv"

        def generic(attempt: int) -> Path:
            out = work / f"generic{attempt}.csv"
            with engine.connect() as conn, out.open("wb") as file:
                file.write(_db.csv_line(_db.columns(conn, "contributions")).encode())
                for batch in _db.stream_rows(conn, SELECT):
                    file.write("".join(map(_db.csv_line, batch)).encode())
            return out

        def psql(attempt: int) -> Path:
            out = work / f"psql{attempt}.csv"
            subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", name,
                            "-c", f"\\copy ({SELECT}) TO '{out}' WITH (FORMAT csv, HEADER true)"],
                           check=True)
            return out

        results = {"database.export (COPY via psycopg 3)": best_of(args.repeat, ours)}
        if shutil.which("psql"):
            results[PSQL] = best_of(args.repeat, psql)
        else:
            print("psql not on PATH: no \\copy figure")
        results["row streaming + Python CSV (generic path)"] = best_of(args.repeat, generic)
        engine.dispose()

        print(f"PostgreSQL export of {args.rows:,} rows, best of {args.repeat}:")
        for label, (seconds, out) in results.items():
            size = out.stat().st_size
            digest = hashlib.sha256(out.read_bytes()).hexdigest()[:12]
            print(f"  {label:<44} {seconds:7.3f} s  {args.rows / seconds:>10,.0f} rows/s  "
                  f"{size / seconds / 1e6:6.1f} MB/s  sha256 {digest}")
        ours_s = results["database.export (COPY via psycopg 3)"][0]
        if PSQL in results:
            print(f"  ratio database.export / psql \\copy: {ours_s / results[PSQL][0]:.2f}")
        generic_s = results["row streaming + Python CSV (generic path)"][0]
        print(f"  ratio generic path / database.export: {generic_s / ours_s:.2f}")
    finally:
        admin_conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin_conn.close()
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
