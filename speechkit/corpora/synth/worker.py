"""Worker entry point: ``python -m speechkit.corpora.synth.worker`` reads one JSON ``ShardJob`` on
stdin, synthesizes that speaker's utterances, and writes the utterance records as JSON on stdout.

It is a separate module (not imported by the package) so that each shard runs in a fresh process,
which is what makes espeak-ng's output bit-reproducible (see generate.py).
"""
import json
import sys

from speechkit.corpora.synth.generate import ShardJob, run_shard


def main() -> None:
    job = ShardJob(**json.load(sys.stdin))
    json.dump(run_shard(job), sys.stdout)


if __name__ == "__main__":
    main()
