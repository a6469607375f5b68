# Settings for a smoke run on a tiny corpus (what test/test_recipe_librispeech.py runs):
#   ./run.sh --config conf/tiny.sh --corpus-dir DIR --librilight-dir DIR
# Tiny models, a few updates, small K; CPU only. The numbers it gives mean nothing.
nj=1
ngpu=0
auto_update_freq=false
mfcc_k=12
iter2_k=12
kmeans_portion=1.0
kmeans_opts="--n-init 1 --max-iter 5 --batch-size 2000"
layer=1
pretrain1_config=conf/pretrain_hubert_tiny_iter1.yaml
pretrain2_config=conf/pretrain_hubert_tiny_iter2.yaml
finetune_config=conf/finetune_ctc_tiny.yaml
lm_order=3
lm_weights="1 2"
word_scores="0"
lm_beam=20
