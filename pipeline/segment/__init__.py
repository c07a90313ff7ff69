"""Segment: every way this project turns an image into instance labels (0 = background).

- `classical`: the registry of classical methods (the notebook's thresholds, the watershed);
- `watershed`: the marker-controlled watershed, also used to split a network's foreground;
- `baseline`: the stage running the classical methods on the test split;
- `network`: the U-Net and its device; `card`: the typed model card;
- `postprocess`: foreground probability -> instances; `inference`: load a model and predict.
"""
