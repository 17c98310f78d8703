"""What every data source hands to the pipeline: validated logs and feature tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional

import pandas as pd

from rankers.data.features import FeatureSpec


@dataclass
class RawData:
    """Validated, de-duplicated inputs (see rankers.data.log.validate_log for columns).

    ``test_log`` is set by sources with an official split (MovieLens ``ua``); otherwise
    the pipeline splits ``log``. Feature tables are indexed by id (str).
    """

    log: pd.DataFrame
    name: str = "data"
    users: Optional[pd.DataFrame] = None
    items: Optional[pd.DataFrame] = None
    user_specs: List[FeatureSpec] = field(default_factory=list)
    item_specs: List[FeatureSpec] = field(default_factory=list)
    test_log: Optional[pd.DataFrame] = None
    max_grade: float = 3.0
