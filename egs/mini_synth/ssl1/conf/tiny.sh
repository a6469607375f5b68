# Settings for a smoke run of every stage in about a minute (the test suite uses them):
#   ./run.sh --config conf/tiny.sh
size=tiny
mfcc_k=20
iter2_k=20
layer=2
ft_utts=20
num_target_trials=4
pretrain_opts="--set trainer.max_updates=6 --set schedule.warmup_updates=2 --set trainer.valid_interval=3 --set trainer.save_interval=3 --set trainer.log_interval=2 --set data.max_tokens=64000"
finetune_opts="--set trainer.max_updates=6 --set trainer.valid_interval=3 --set trainer.save_interval=3 --set trainer.log_interval=2 --set model.freeze_finetune_updates=2"
sid_opts="--epochs 3 --patience 3"
sv_heldout=3
sv_embed_dim=16
