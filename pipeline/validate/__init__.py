"""Validate: Great Expectations data checks that gate a run before any preprocessing.

- `suite`: the checks, built in code from `ValidateConfig` (critical or warning);
- `tables`: the three tables they run on (manifest, per-field file statistics, objects);
- `gx`: running the suites with GX 1.x and writing Data Docs;
- `run`: the stage, ``validate(dataset_uri, cfg, out_dir) -> ValidationResult``.
"""
