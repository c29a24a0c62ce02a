"""Study specs, search spaces, launching and resuming on Ray Tune."""
