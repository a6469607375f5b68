# Where the corpus is on this machine (ESPnet's db.sh convention). Edit this line, export the variable
# before running, or pass --corpus-dir to run.sh. Nothing is downloaded.
#   TEDLIUM3: TED-LIUM release 3 as unpacked from openslr.org/51 (the folder TEDLIUM_release-3, holding
#             legacy/ and speaker-adaptation/, or its parent)
TEDLIUM3=${TEDLIUM3:-/data/TEDLIUM_release-3}
