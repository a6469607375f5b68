"""The documentation names only things that exist, and every recipe has a README."""
from __future__ import annotations

import pathlib
import re
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "utils" / "README.md", *sorted((ROOT / "egs").glob("*/*/README.md"))]


def test_every_recipe_has_a_readme():
    recipes = sorted(p.parent for p in (ROOT / "egs").glob("*/*/run.sh"))
    assert len(recipes) >= 4
    missing = [str(r.relative_to(ROOT)) for r in recipes if not (r / "README.md").is_file()]
    assert not missing, f"recipes without README.md: {missing}"


def test_docs_name_only_existing_clis_and_scripts():
    bad = []
    for doc in DOCS:
        text = doc.read_text()
        for mod in re.findall(r"python -m speechkit\.bin\.(\w+)", text):
            if not (ROOT / "speechkit" / "bin" / f"{mod}.py").is_file():
                bad.append(f"{doc.relative_to(ROOT)}: speechkit.bin.{mod}")
        for script in re.findall(r"\butils/([\w.-]+\.(?:sh|pl))", text):
            if not (ROOT / "utils" / script).is_file():
                bad.append(f"{doc.relative_to(ROOT)}: utils/{script}")
    assert not bad, f"documented but absent: {bad}"


def test_utils_readme_shows_each_scripts_real_usage():
    # every data-dir script's row quotes a usage line that the script's --help prints, verbatim
    text = (ROOT / "utils" / "README.md").read_text()
    for script in sorted(p.name for p in (ROOT / "utils").glob("*_data_dir.sh")):
        row = re.search(rf"^\| `{re.escape(script)}` \|(.*)\|$", text, re.M)
        assert row, f"utils/README.md has no row for {script}"
        shown = [u.replace("\\|", "|") for u in re.findall(rf"`({re.escape(script)} [^`]*)`", row.group(1))]
        assert shown, f"utils/README.md shows no usage of {script}"
        r = subprocess.run(["bash", str(ROOT / "utils" / script), "--help"], capture_output=True, text=True)
        usages = {re.sub(r"^\s*(Usage: )?\S*/", "", line) for line in r.stdout.splitlines()
                  if re.match(rf"^\s*(Usage: )?\S*{re.escape(script)} ", line)}
        for u in shown:
            assert u in usages, f"utils/README.md shows `{u}`; {script} --help says {sorted(usages)}"
