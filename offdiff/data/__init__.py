"""Datasets: sources (Minari, D4RL-style HDF5, toy tasks), transforms, reference scores, device buffer."""
