"""What every data source hands to the pipeline: a validated log of codes and feature tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import pandas as pd

from rankers.data.eventlog import EventLog
from rankers.model.tokenizer import FeatureSpec


@dataclass
class RawData:
    """Validated, de-duplicated inputs.

    ``log``: the interactions (``EventLog``). ``test_log`` is set by sources with an official
    split (MovieLens ``ua``, ``data=files``); otherwise the pipeline splits ``log``. Feature
    tables are indexed by id (str), columns as ``rankers.data.features.validate_table`` returns.
    """

    log: EventLog
    name: str = "data"
    users: Optional[pd.DataFrame] = None
    items: Optional[pd.DataFrame] = None
    user_specs: List[FeatureSpec] = field(default_factory=list)
    item_specs: List[FeatureSpec] = field(default_factory=list)
    test_log: Optional[EventLog] = None
    max_grade: float = 3.0
