"""speechkit: a small recipe toolkit for self-supervised speech representation learning."""
import pathlib

from setuptools import find_packages, setup

here = pathlib.Path(__file__).parent
requirements = [
    line.strip()
    for line in (here / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="speechkit",
    version="0.1.0",
    description="Self-supervised speech representation learning: recipes, models, Kaldi IO, training, scoring",
    long_description=(here / "README.md").read_text() if (here / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["speechkit", "speechkit.*"]),
    python_requires=">=3.10",
    install_requires=requirements,
    extras_require={"test": [
        line.strip() for line in (here / "requirements-test.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]},
    license="Apache-2.0",
)
