# Where the corpora are on this machine (ESPnet's db.sh convention). Edit these lines, export the
# variables before running, or pass --vox2-dir / --lrs3-dir / --vox-en-ids to run.sh. Nothing is downloaded.
#   VOXCELEB2: the folder holding dev/mp4 and test/mp4 (VoxCeleb2 video release)
#   LRS3: the LRS3-TED folder holding pretrain/ trainval/ test/
#   VOX_EN_IDS: the English-subset clip list (e.g. av_hubert's vox-en.id); empty = every dev clip
VOXCELEB2=${VOXCELEB2:-/data/voxceleb2}
LRS3=${LRS3:-/data/lrs3}
VOX_EN_IDS=${VOX_EN_IDS:-}
