"""Ferry promotion: releases, promotions, rollbacks, policies and approvals; the HTTP API."""
