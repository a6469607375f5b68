# Settings for a smoke run on a tiny corpus (what test/test_recipe_lrs3.py runs):
#   ./run.sh --config conf/tiny.sh --lrs3-dir DIR [--noise-dir DIR]
# Tiny models, a few updates, small K, two iterations; CPU only. The numbers it gives mean nothing.
nj=1
ngpu=0
auto_update_freq=false
num_valid=1
iters=2
mfcc_k=8
layer_list="1 1 1 1"
k_list="8 8 8 8"
kmeans_portion=1.0
pretrain_config=conf/pretrain_avhubert_tiny.yaml
pretrain_last_config=conf/pretrain_avhubert_tiny_last.yaml
finetune="30h 433h"
finetune_config=conf/finetune_tiny.yaml
ft_babble=false
babble_speakers=2
snrs="0"
decode_opts="--beam 2"
babble_data=data/train_30h  # the tiny valid set has one utterance
