"""Ingestion: sources, tiling, decoding, the batch pipeline and the Celery app."""
