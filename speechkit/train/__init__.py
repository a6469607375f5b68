"""speechkit.train: datasets, length-bucketed batching, optimizers, schedules, checkpoints and the
trainer (DDP, AMP, gradient accumulation, exact resume) shared by every model.

- :mod:`~speechkit.train.config`       TrainConfig (YAML -> dataclasses, strict keys)
- :mod:`~speechkit.train.dataset`      AudioLabelDataset (data dir + km.<tag> labels, min-length filter)
- :mod:`~speechkit.train.batching`     make_batches / BucketBatchSampler (max_tokens), Collater (crop, pad)
- :mod:`~speechkit.train.optim`        build_optimizer (Adam / AdamW)
- :mod:`~speechkit.train.schedule`     LRSchedule (polynomial_decay, linear, cosine, tri_stage, constant)
- :mod:`~speechkit.train.checkpoint`   atomic save, validated load, RNG state, rotation
- :mod:`~speechkit.train.distributed`  torchrun / DDP setup
- :mod:`~speechkit.train.trainer`      Trainer, make_collater
"""
