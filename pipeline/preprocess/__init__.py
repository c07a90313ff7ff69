"""Preprocess: a dataset version -> normalised arrays per split, in the run folder.

- `samples`: the `Sample` record, percentile normalisation, reading fields and prepared splits;
- `prepare`: the stage, ``preprocess(dataset_uri, cfg, out_dir) -> PreparedRef``.
"""
