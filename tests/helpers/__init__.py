"""Helpers shared by test modules (fixtures live in tests/conftest.py):

- `cli`: run `harness` in a fresh interpreter, as a user would.
- `browser`: open an HTML page in headless Chromium and read back its DOM.
- `models`: models with known behaviour (one that forgot, made by a real fine-tune).
- `training`: training rows and a backend call, and a suite to add trained candidates to.
"""
