"""Tests of the service: a BentoML home holding the imported champion (tests/conftest.py `bento_home`, trained on
the UCI data where it is present), nearly all against a real `bentoml serve` of the source tree: the shared one
(`service`, `client`) or one of their own on a private copy of the home (`helpers.copy_home`, faults, auth, bounded
connections). REST, V2 over REST and gRPC, feedback, hostile input and fuzzing, the docs page, the metrics port.
"""
