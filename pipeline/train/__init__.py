"""Train: the U-Net on the prepared train split, selected on val.

- `loop`: ``train_seg`` on plain arrays (batches, loss, validation), no I/O;
- `stage`: the stage shell (reads splits, model card, checkpoints, tracking).
"""
