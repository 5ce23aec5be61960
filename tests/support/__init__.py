"""Helpers shared by the tests: tiny configs, seeded runs, synthetic data, repository paths."""
