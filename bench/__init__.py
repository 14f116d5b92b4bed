"""The benchmark (bench/README.md): `python bench/run.py`; its parts are modules of this package."""
