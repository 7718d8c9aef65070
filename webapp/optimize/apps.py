from django.apps import AppConfig


class OptimizeConfig(AppConfig):
    """No tables of its own: it makes and measures the registry's artifacts through jobs."""

    name = "webapp.optimize"
