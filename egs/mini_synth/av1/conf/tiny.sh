# Settings for a smoke run of every stage in a minute or two (the test suite uses them):
#   ./run.sh --config conf/tiny.sh
size=tiny
corpora=lrs3
mfcc_k=8
iter2_k=8
layer=1
iters=2
babble_speakers=2
snrs="0"
decode_opts="--beam 2"
pretrain_opts="--set trainer.max_updates=4 --set schedule.warmup_updates=1 --set trainer.valid_interval=2 --set trainer.save_interval=2 --set trainer.log_interval=1 --set model.encoder.num_layers=2 --set model.encoder.embed_dim=32 --set model.encoder.ffn_dim=64"
finetune_opts="--set trainer.max_updates=4 --set trainer.valid_interval=2 --set trainer.save_interval=2 --set trainer.log_interval=1 --set model.freeze_finetune_updates=1 --set model.av_data.noise_prob=0.5"
ft_noise_opts="--noise-dir corpus/noise"  # babble needs 30 training voices; the tiny corpus has fewer
