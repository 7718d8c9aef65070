import uuid

from django import template
from django.utils.html import format_html

register = template.Library()


@register.simple_tag
def submission_key_field():
    """A job form's one-time idempotency key, new at each render: a double click or a resubmitted
    POST answers with the job the first one started (webapp.jobs.kinds.submission_key)."""
    return format_html('<input type="hidden" name="idempotency_key" value="{}">', uuid.uuid4().hex)
