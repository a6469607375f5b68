"""The blind-guess row (speechkit.bin.guess_baseline): one training transcript for every utterance."""
import json

from speechkit.bin import guess_baseline
from speechkit.bin.guess_baseline import best_guess, word_errors


def test_word_errors():
    assert word_errors("a b c".split(), "a b c".split()) == 0
    assert word_errors("a b c".split(), "a x c".split()) == 1
    assert word_errors("a b c".split(), []) == 3
    assert word_errors([], "a b".split()) == 2
    assert word_errors("a b c d".split(), "b c d e".split()) == 2


def test_best_guess_has_the_fewest_errors_on_the_tune_set():
    train = ["BIN BLUE AT A", "SET RED BY B", "BIN RED AT C", "SET BLUE WITH A"]
    tune = ["BIN RED AT A", "BIN RED BY A", "SET RED AT A"]
    # BIN BLUE AT A and BIN RED AT C both make 1 + 2 + 2 errors; the tie goes to sorted order
    assert best_guess(train, tune) == ("BIN BLUE AT A", 5)
    assert best_guess(train[1:], tune) == ("BIN RED AT C", 5)
    # ties go to the more frequent transcript, then to sorted order; the candidate list can be capped
    assert best_guess(["B", "A", "B"], ["C"]) == ("B", 1)
    assert best_guess(["B", "A"], ["C"]) == ("A", 1)
    assert best_guess(["X Y", "X Y", "A"], ["A"], max_candidates=1) == ("X Y", 2)


def test_cli_writes_scored_decode_dirs(tmp_path):
    data = tmp_path / "data"
    for name, lines in (("train", ["u1 bin blue", "u2 bin red", "u3 set red"]),
                        ("valid", ["v1 bin red", "v2 set red"]), ("test", ["t1 lay red", "t2 bin green"])):
        (data / name).mkdir(parents=True)
        (data / name / "text").write_text("".join(f"{ln}\n" for ln in lines))
    assert guess_baseline.main(["--train-text", str(data / "train" / "text"), "--tune-dir", str(data / "valid"),
                                "--data-dir", str(data / "test"), "--out", str(tmp_path / "exp" / "guess")]) == 0
    out = tmp_path / "exp" / "guess"
    assert (out / "decode_test_clean" / "hyp").read_text() == "t1 BIN RED\nt2 BIN RED\n"
    rec = json.loads((out / "decode_test_clean" / "result.json").read_text())
    assert rec["values"]["Err"] == 50.0 and rec["info"]["modalities"] == "none"
    assert json.loads((out / "decode_valid_clean" / "result.json").read_text())["values"]["Err"] == 25.0
