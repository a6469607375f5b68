# Where the corpora are on this machine (ESPnet's db.sh convention). Edit these lines, export the
# variables before running, or pass --corpus-dir / --librilight-dir to run.sh. Nothing is downloaded.
#   LIBRISPEECH: the folder holding LibriSpeech/ (as unpacked from openslr.org/12), or LibriSpeech/ itself
#   LIBRILIGHT_FT: Libri-light's limited-resource fine-tuning sets, the folder librispeech_finetuning/
#                  (unpacked from librispeech_finetuning.tgz) or its parent; empty = skip those sets
LIBRISPEECH=${LIBRISPEECH:-/data/LibriSpeech}
LIBRILIGHT_FT=${LIBRILIGHT_FT:-}
