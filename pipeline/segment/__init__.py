"""Segment: every way this project turns an image into instance labels (0 = background).

- `classical`: the registry of classical methods (the notebook's thresholds, the watershed);
- `watershed`: the marker-controlled watershed, also used to split a network's foreground;
- `baseline`: the stage running the classical methods on the test split;
- `network`: the U-Net and its device; `card`: the typed model card;
- `postprocess`: foreground probability -> instances, with `filters` (OpenCV with SciPy's and
  scikit-image's results), `scale` (object size) and `stats` (robust statistics); `fields`: a
  new image's channels and objects' size, without torch; `inference`: load a model and
  predict (`graphs`: replayed as CUDA graphs on a GPU);
- `artifact`: model folders; `measure`: per-object tables and overlays; `batch`: a folder of
  new images, its processes passing arrays through `handoff`; `inbox`: the DAG's new images.
"""
