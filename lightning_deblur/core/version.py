"""The version of the package (one home: the package, its command line and its build read it)."""

__version__ = "0.1.0"
