"""The version, in a module of its own so that submodules read it without
importing the package that imports them."""
__version__ = "0.1.0"
