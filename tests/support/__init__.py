"""What tests share: servers and clients they start, helpers, data. Test modules import from here,
never from each other (tests/unit/test_test_imports.py)."""
