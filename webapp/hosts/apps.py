from django.apps import AppConfig


class HostsConfig(AppConfig):
    name = "webapp.hosts"
