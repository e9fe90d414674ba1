"""The excnet web app and REST service (`excnet serve`): `app` has the API, `workers` the pool."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
