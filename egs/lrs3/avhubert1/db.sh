# Where the corpora are on this machine (ESPnet's db.sh convention). Edit these lines, export the
# variables before running, or pass --lrs3-dir / --noise-dir to run.sh. Nothing is downloaded.
#   LRS3: the unpacked LRS3-TED release, the folder holding pretrain/ trainval/ test/
#   MUSAN_NOISE: a folder of noise recordings for AVSR training and the noisy tests (MUSAN's noise/ part);
#                empty = babble only (made from the LRS3 training speech)
LRS3=${LRS3:-/data/lrs3}
MUSAN_NOISE=${MUSAN_NOISE:-}
