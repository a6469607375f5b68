# Settings for a smoke run on a tiny corpus (what test/test_recipe_tedlium3.py runs):
#   ./run.sh --config conf/tiny.sh --corpus-dir DIR --import-model TINY_HF_FOLDER
# Tiny counts, CPU only. The numbers it gives mean nothing.
nj=1
ngpu=0
auto_update_freq=false
finetune_config=conf/finetune_ctc_tiny.yaml
