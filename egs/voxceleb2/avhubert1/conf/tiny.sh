# Settings for a smoke run on tiny corpora (what test/test_recipe_voxceleb2.py runs):
#   ./run.sh --config conf/tiny.sh --vox2-dir DIR --lrs3-dir DIR [--vox-en-ids FILE]
# Tiny models, a few updates, small K; CPU only. The numbers it gives mean nothing.
nj=1
ngpu=0
auto_update_freq=false
mfcc_k=8
layer_list="1"
k_list="8"
kmeans_portion=1.0
sv_layer=1
num_target_trials=4
pretrain_config=conf/pretrain_avhubert_tiny.yaml
pretrain_last_config=conf/pretrain_avhubert_tiny_last.yaml
