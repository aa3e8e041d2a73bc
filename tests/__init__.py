"""The test suite: a package, so that its support code imports as ``tests.support`` (see
tests/support/__init__.py) and every test module has a unique dotted name."""
