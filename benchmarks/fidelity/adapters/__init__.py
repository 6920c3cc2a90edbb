"""One adapter per release, by the name `run.py --release` takes."""

from __future__ import annotations

from fidelity.adapters.dql import DQLAdapter
from fidelity.adapters.dtql import DTQLAdapter
from fidelity.adapters.eda import EDAAdapter

ADAPTERS = {a.release: a for a in (DQLAdapter, DTQLAdapter, EDAAdapter)}
