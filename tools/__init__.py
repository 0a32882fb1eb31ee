"""Programs that make project artefacts (the demo trunk), not datasets or benchmarks."""
