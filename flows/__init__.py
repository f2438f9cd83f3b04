"""Prefect flows: the cutover (phases as subflows, steps as tasks) and its rollback."""
