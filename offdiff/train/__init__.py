"""The stage runner, run folders and the evaluation protocol."""
