"""`ragline bench`: the benchmarks of a source checkout, registered by ragline.cli when installed (bench/README.md)."""
