"""Root conftest: the shared fixtures of ferry_testing for every package's tests."""

pytest_plugins = ["ferry_testing.fixtures"]
