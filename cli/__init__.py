"""``fabu``: the command line for people at a terminal and for CI jobs."""
