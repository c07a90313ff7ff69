"""Ingest: raw data from any source -> an immutable, content-addressed dataset version.

- `sources`: ``data.source`` (demo, broad, http(s)://, s3://, archives, a folder) -> a folder;
- `download` (HTTP with resume and checksums) and `extract` (safe zip extraction);
- `layouts`: parsers turning a folder into fields (bbbc020, ctc, folder);
- `splits`: train / val / test by field; `manifest`: the dataset version on disk;
- `dataset`: the stage, ``ingest(cfg) -> DatasetRef``; `demo`: the synthetic BBBC020 set.
"""
