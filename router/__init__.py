"""beacon-router: accept installation beacons, make them privacy-safe, fan them out durably."""

__version__ = "0.1.0"
