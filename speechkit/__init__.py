"""speechkit: self-supervised speech representation learning in one small toolkit."""
__version__ = "0.1.0"
