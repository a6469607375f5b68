# Where the corpora are on this machine (ESPnet's db.sh convention). Edit these lines, export the
# variables before running, or pass --corpus-dir / --librilight-dir to run.sh. Nothing is downloaded.
#   LIBRISPEECH: the folder holding LibriSpeech/ (as unpacked from openslr.org/12), or LibriSpeech/ itself
#   LIBRILIGHT_FT: Libri-light's limited-resource fine-tuning sets, the folder librispeech_finetuning/
#                  (unpacked from librispeech_finetuning.tgz) or its parent; empty = skip those sets
#   LIBRISPEECH_LM: the official LM resources (openslr.org/11): a folder holding 4-gram.arpa (gunzipped
#                  4-gram.arpa.gz) and librispeech-lexicon.txt; empty = build a word 4-gram from the
#                  training transcripts (far weaker than the official one, trained on 800M words of books)
LIBRISPEECH=${LIBRISPEECH:-/data/LibriSpeech}
LIBRILIGHT_FT=${LIBRILIGHT_FT:-}
LIBRISPEECH_LM=${LIBRISPEECH_LM:-}
