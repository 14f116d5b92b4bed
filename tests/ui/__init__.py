"""Tests of the Streamlit UI: its form and client (Streamlit's AppTest against a fake service) and the real app in
Debian's chromium (Playwright) against the shared service.
"""
