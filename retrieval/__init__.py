"""Vector store, SQL metadata, pair / top-k queries, evaluation and calibration."""
