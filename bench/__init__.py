"""The benchmark (bench/README.md): `python -m bench.run`; its parts are modules of this package."""
