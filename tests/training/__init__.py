"""Tests of training: the UCI data (READMISSION_DATA or ../shared/data; `uci_zip` skips without it), real fits
into throwaway SQLite MLflow stores, training killed half-way, and `readmission import` into a BentoML home.
"""
