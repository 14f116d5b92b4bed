"""What may be published about the patients scored: the one step every patient-moving figure is published in."""

from __future__ import annotations

# Series and figures that move with each patient are published in steps of at least this many rows: the smallest
# group a difference of two readings (two scrapes, two GET /performance) can describe (README, "Threat model").
PUBLISH_ROWS = 20
