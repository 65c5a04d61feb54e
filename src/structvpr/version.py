"""The package version, in a module of its own so that library modules can read it without
importing the package root (whose lazy `load`/`PlaceIndex` would make an import cycle)."""

__version__ = "0.1.0"
