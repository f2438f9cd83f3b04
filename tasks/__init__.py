"""The built-in step library: one module per family of actions and checks.

Importing this package registers every built-in step type (see cutover.steps).
"""

from tasks import (  # noqa: F401  (imported for their registrations)
    channels,
    database,
    deploy,
    http,
    notice,
    notify,
    reconcile,
    ssh,
    transfer,
    wait,
)
