"""utils/parse_options.sh as a recipe's run.sh uses it."""
from __future__ import annotations

import pathlib
import subprocess

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

RUN_SH = """\
#!/usr/bin/env bash
set -euo pipefail
stage=1
stop_stage=100
use_gpu=false
nj=4
train_set="train clean"
. ./cmd.sh
help_message="Usage: $0 [options] <out-dir>"
. utils/parse_options.sh
echo "stage=$stage stop_stage=$stop_stage use_gpu=$use_gpu nj=$nj train_set=$train_set"
echo "train_cmd=$train_cmd"
echo "args=$*"
"""


@pytest.fixture
def recipe(tmp_path: pathlib.Path) -> pathlib.Path:
    (tmp_path / "utils").symlink_to(ROOT / "utils")
    (tmp_path / "cmd.sh").write_text('export train_cmd="utils/run.pl"\n')
    (tmp_path / "run.sh").write_text(RUN_SH)
    (tmp_path / "run.sh").chmod(0o755)
    return tmp_path


def sh(recipe: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=30)


def values(r: subprocess.CompletedProcess) -> dict[str, str]:
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        for part in line.split(" ") if line.startswith("stage=") else [line]:
            k, _, v = part.partition("=")
            out[k] = v
    return out


def test_defaults_and_both_spellings(recipe):
    assert values(sh(recipe))["stop_stage"] == "100"
    v = values(sh(recipe, "--stage", "3", "--stop-stage", "6"))
    assert (v["stage"], v["stop_stage"]) == ("3", "6")
    assert values(sh(recipe, "--stop_stage", "7"))["stop_stage"] == "7"
    assert values(sh(recipe, "--stop-stage=8", "--nj=2"))["stop_stage"] == "8"


def test_positional_args_remain(recipe):
    v = values(sh(recipe, "--nj", "2", "out dir", "--not-an-option"))
    assert v["nj"] == "2" and v["args"] == "out dir --not-an-option"
    assert values(sh(recipe, "--", "--stage"))["args"] == "--stage"
    assert values(sh(recipe, "--stage", "-1"))["stage"] == "-1"  # negative values are values


def test_values_with_spaces_and_sourced_variables(recipe):
    v = values(sh(recipe, "--train-cmd", "utils/slurm.pl --partition gpu"))
    assert v["train_cmd"] == "utils/slurm.pl --partition gpu"
    r = sh(recipe, "--train_set", "x y")
    assert r.returncode == 0 and r.stdout.splitlines()[0].endswith("train_set=x y")


def test_booleans_are_validated(recipe):
    assert values(sh(recipe, "--use-gpu", "true"))["use_gpu"] == "true"
    r = sh(recipe, "--use-gpu", "yes")
    assert r.returncode == 1
    assert "option --use-gpu is a boolean: expected true or false, got 'yes'" in r.stderr


def test_unknown_option_lists_known_ones(recipe):
    r = sh(recipe, "--stag", "3")
    assert r.returncode == 1 and "unknown option --stag" in r.stderr
    for known in ("--stage", "--stop-stage", "--use-gpu", "--nj", "--train-set", "--train-cmd"):
        assert known in r.stderr, known
    assert "--help-message" not in r.stderr
    assert "--PATH" not in r.stderr and sh(recipe, "--PATH", "x").returncode == 1  # env vars are not options
    r = sh(recipe, "--nj")
    assert r.returncode == 1 and "option --nj needs a value" in r.stderr


def test_config_file(recipe):
    (recipe / "conf.sh").write_text("# comment\nnj=16\n\nstage=2\n")
    v = values(sh(recipe, "--config", "conf.sh"))
    assert (v["nj"], v["stage"]) == ("16", "2")
    v = values(sh(recipe, "--stage", "5", "--config", "conf.sh"))  # command line wins over config
    assert (v["nj"], v["stage"]) == ("16", "5")
    (recipe / "bad.sh").write_text("nj=2\nnum_epochs=3\n")
    r = sh(recipe, "--config", "bad.sh")
    assert r.returncode == 1 and "bad.sh:2: unknown variable 'num_epochs'" in r.stderr
    (recipe / "bad2.sh").write_text("echo hi\n")
    r = sh(recipe, "--config", "bad2.sh")
    assert r.returncode == 1 and "bad2.sh:1: expected name=value" in r.stderr
    r = sh(recipe, "--config", "nope.sh")
    assert r.returncode == 1 and "config file 'nope.sh' does not exist" in r.stderr


def test_help_shows_usage_and_current_values(recipe):
    r = sh(recipe, "--nj", "9", "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("Usage: ./run.sh [options] <out-dir>")
    assert any(line.split()[:2] == ["--nj", "9"] for line in r.stdout.splitlines())
    assert any(line.split()[:2] == ["--stop-stage", "100"] for line in r.stdout.splitlines())
    r = subprocess.run([str(ROOT / "utils/parse_options.sh"), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--stop-stage" in r.stdout


def test_variables_named_like_the_setters_locals(tmp_path):
    # --name/--old/--where/--n once set a local variable of parse_options.sh's setter and were lost.
    (tmp_path / "utils").symlink_to(ROOT / "utils")
    names = ("name", "old", "where", "n", "k", "value")
    script = "#!/usr/bin/env bash\nset -euo pipefail\n" + "".join(f"{n}=default\n" for n in names) + \
        ". utils/parse_options.sh\n" + "".join(f'echo "{n}=${n}"\n' for n in names)
    (tmp_path / "run.sh").write_text(script)
    (tmp_path / "run.sh").chmod(0o755)
    args = [a for n in names for a in (f"--{n}", f"set-{n}")]
    r = subprocess.run(["./run.sh", *args], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [f"{n}=set-{n}" for n in names]
    r = subprocess.run(["./run.sh", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert any(line.split()[:2] == ["--n", "default"] for line in r.stdout.splitlines()), r.stdout
    r = subprocess.run(["./run.sh", "--_po_known", "x"], cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "invalid option name --_po_known" in r.stderr


def test_help_lists_the_scripts_own_options_only(recipe):
    r = sh(recipe, "--help")
    assert r.returncode == 0 and "Usage: ./run.sh [options] <out-dir>" in r.stdout
    assert "--stage" in r.stdout and "--train-set" in r.stdout
    assert "--train-cmd" not in r.stdout  # cmd.sh's variable: environment, not a recipe option
    assert "train_cmd=utils/slurm.pl" in sh(recipe, "--train-cmd", "utils/slurm.pl").stdout  # still accepted
