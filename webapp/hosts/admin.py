from django.contrib import admin

from webapp.hosts.models import WorkerHost


@admin.register(WorkerHost)
class WorkerHostAdmin(admin.ModelAdmin):
    list_display = ["hostname", "queues", "last_seen", "stopped_at"]
