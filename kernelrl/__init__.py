"""The `kernelrl` console script: one front for the commands of every room (check, serve, curate, eval)."""
