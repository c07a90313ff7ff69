"""Registry: trained models as numbered, never-overwritten versions in a folder or on S3.

- `versions`: ``register_model`` (claim the next version exclusively) and ``fetch_model``.
"""
