"""speechkit.io: Kaldi data dirs, audio loading and ark/scp storage.

- :mod:`speechkit.io.datadir` — read/write/validate data dirs; fix, split, subset, combine.
- :mod:`speechkit.io.audio` — wav.scp entries (files, ``cmd |`` pipes, segments) to float32 mono.
- :mod:`speechkit.io.ark` — float matrices and int vectors as ark/scp shards (kaldiio).
"""
from speechkit.io.ark import ArkWriter, merge_scps, read_scp
from speechkit.io.audio import AudioError, AudioReader, audio_duration, load_audio
from speechkit.io.datadir import (
    DataDir,
    DataDirError,
    read_segments,
    read_table,
    validate_data_dir,
    write_data_dir,
    write_table,
)
from speechkit.io.datadir_ops import FixReport, combine_data_dirs, fix_data_dir, split_data_dir, subset_data_dir

__all__ = [
    "ArkWriter", "merge_scps", "read_scp", "AudioError", "AudioReader", "audio_duration", "load_audio",
    "DataDir", "DataDirError", "FixReport", "combine_data_dirs", "fix_data_dir", "read_segments",
    "read_table", "split_data_dir", "subset_data_dir", "validate_data_dir", "write_data_dir", "write_table",
]
