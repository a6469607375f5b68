"""Make a CUDA build of torchaudio importable beside a CPU-only torch.

Usage: python tools/fix_torchaudio.py

The torchaudio wheel on PyPI is built against CUDA torch. Beside a CPU torch its
compiled extensions fail to load (``libc10_cuda.so: cannot open shared object
file``). speechkit uses only the pure-Python parts of torchaudio
(``compliance.kaldi``, ``functional``, ``models``), which work once those
extension libraries are gone. This script removes them, and only when the
installed torch has no CUDA; it never touches a CUDA install.
"""
import importlib.util
import pathlib
import sys


def main() -> int:
    import torch

    spec = importlib.util.find_spec("torchaudio")
    if spec is None or spec.origin is None:
        print("[fix_torchaudio] torchaudio is not installed; nothing to do")
        return 0
    root = pathlib.Path(spec.origin).parent
    if torch.version.cuda is not None:
        print(f"[fix_torchaudio] torch {torch.__version__} has CUDA {torch.version.cuda}; leaving torchaudio as it is")
        return 0
    libs = sorted(p for p in root.rglob("*.so*") if p.is_file())
    if not libs:
        return 0
    for p in libs:
        p.unlink()
    print(
        f"[fix_torchaudio] removed {len(libs)} compiled torchaudio libraries from {root}: "
        "they are CUDA builds that cannot load beside the CPU-only torch "
        f"{torch.__version__}; speechkit needs only torchaudio's pure-Python modules."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
