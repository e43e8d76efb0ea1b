"""Spec layer: documents → declarations (schema-checked meshforge kinds, imported Kubernetes kinds)."""
