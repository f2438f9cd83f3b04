"""Cutover orchestration runbook executor on Prefect 3.

A cutover is data: a runbook (YAML) lists phases and steps at wall-clock times,
an environment profile says where the systems are, and a Prefect flow executes
the resulting plan, gating every step on health checks and recording everything
in a ledger.
"""

__version__ = "0.1.0"
