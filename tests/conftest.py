"""Makes the ``probe`` fixture of tests/kernel_helpers.py available to every test module."""

pytest_plugins = ["tests.kernel_helpers"]
