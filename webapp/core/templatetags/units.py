"""`{{ model.modality|rate_unit }}`: images/s for an image model, rows/s for a text model."""

from django import template

from webapp.core import modality

register = template.Library()
register.filter("rate_unit", modality.rate_unit)
