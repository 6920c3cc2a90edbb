"""Aggregation: run folders -> a tidy scores CSV -> rliable statistics, tables and plots.

`collect` reads run folders into CSV rows, `scores` defines the CSV and its views (headline, best
over training, score matrices), `stats` wraps rliable, `tables` and `plots` render, and `report`
writes the whole out folder from the CSV alone, so `--from-csv` regenerates it byte for byte.
"""
