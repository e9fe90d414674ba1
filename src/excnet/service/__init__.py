"""The excnet web app and REST service (`excnet serve`).

`app` has the API, `workers` the pool, `auth` the bearer tokens, `metrics` the Prometheus
metrics, `logs` the request log, `context` the per-request record, `server` the graceful stop.
"""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
