"""Fidelity harness: an official release, run from the user's checkout, measured exactly like an offdiff run.

An adapter per release (`fidelity.adapters`) drives the release's own agent classes; the shared part
(`fidelity.release`: imports with gym/d4rl/wandb stubbed; `fidelity.harness`: data, stages, evaluation and the
run folder through offdiff's own runner) is written once. See benchmarks/fidelity/README.md.
"""
