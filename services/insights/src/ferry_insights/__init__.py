"""Ferry insights: the read side. Projections of every event, DORA metrics, the dashboard."""
