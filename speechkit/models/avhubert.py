"""AV-HuBERT pre-training: masked prediction of hidden units from lips and audio (Shi et al., 2022).

Batch contract (what the AV pre-training dataset's collater yields; `forward(batch)` reads it)::

    audio_feats  (B, T, 104) float32  stacked log-fbank (speechkit.features.av_audio), already layer-normed
                                      per frame, zero at padding. Missing key or None: no audio in this batch
                                      (its features are zero-filled, as AV-HuBERT does for a missing stream).
    video        (B, 1, T, H, W) float32 mouth ROIs after roi_transforms (crop + normalise), H = W = 88 for
                                      the real models (tests use fewer pixels), zero at padding. Missing or
                                      None: no video (zero-filled features). At least one of the two is needed.
    lengths      (B,) int64           valid 25 Hz frames per clip (the same for both streams; T = max(lengths))
    labels       (B, L) int64         k-means units, padded with -100; at `label_rate` Hz: 100 (MFCC frames,
                                      4 per video frame, subsampled x4 here) or 25 (units of a previous AV model)
    label_lens   (B,) int64           valid labels per clip
    utt_ids      list[str]            for error messages

`forward(batch) -> (loss, stats, sample_size)` as HubertPretrainModel (mean loss over predicted frames plus
feature penalty; `stats["loss_sum"]` the summed form). `extract_features(audio_feats, video, lengths, layer)`
returns (hidden states, frame lengths) with no masking or modality dropout.
"""
