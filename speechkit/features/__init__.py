"""speechkit.features: what k-means and the models read, computed from audio or video.

- :mod:`~speechkit.features.kaldi`, :mod:`~speechkit.features.mfcc`  Kaldi-compatible MFCC / fbank (+ deltas)
- :mod:`~speechkit.features.layer_features`  LayerFeatures: one layer of a trained model (HuBERT iteration 2)
- :mod:`~speechkit.features.dump`  any of them to ark/scp shards in parallel jobs
- :mod:`~speechkit.features.mouth_roi`, :mod:`~speechkit.features.roi_extract`  mouth regions of interest
"""
