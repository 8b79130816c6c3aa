"""A user's module whose import fails (a missing dependency), for tests/test_extensions.py."""

import a_simulator_that_is_not_installed  # noqa: F401
