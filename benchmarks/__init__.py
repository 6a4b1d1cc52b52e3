"""Speed benchmarks (not part of the test run): see conftest.py."""
