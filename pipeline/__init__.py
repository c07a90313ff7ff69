"""cellseg: cell and nucleus segmentation pipeline stages (usable without Airflow)."""

__version__ = "0.1.0"
