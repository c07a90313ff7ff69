"""Evaluate: honest scores of every method and the network on the held-out test fields.

- `metrics`: per-image foreground and instance metrics (definitions in its docstring);
- `reference`: the ground truth of a split, and predicted label images read from folders;
- `scoring`: score every method on every field and write metrics, figures and the report;
- `plots`, `report`: the pictures and the self-contained report.html;
- `stage`: the stage, ``evaluate(...)``, and ``evaluate_folder`` for any predictions folder.
"""
