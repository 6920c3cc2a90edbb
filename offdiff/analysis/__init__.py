"""Aggregation: run folders -> a tidy scores CSV -> rliable statistics, tables and plots.

`collect` reads run folders into CSV rows, `scores` defines the CSV and its views (headline, best
over training, score matrices, curves), `stats` wraps rliable, `layout` names, orders, groups and
colours what is shown, `tables` and `plots` render, `published` sets the papers' numbers beside the
measured ones, and `report` writes the whole out folder from the CSV alone, so `--from-csv` regenerates
it byte for byte.
"""
