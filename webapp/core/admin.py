from django.contrib import admin

from webapp.core.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """An administrator revokes a user's tokens here (deleting them); keys are never shown."""

    list_display = ["user", "name", "prefix", "created_at", "last_used_at", "expires_at"]
    list_filter = ["expires_at"]
    search_fields = ["user__username", "name", "prefix"]
    readonly_fields = ["user", "name", "prefix", "digest", "created_at", "last_used_at", "expires_at"]

    def has_add_permission(self, request) -> bool:
        return False  # a key is shown once, to its owner: issued on the account page or by vintner login
