"""A/B of two checkouts or settings on one runner: rounds of fresh processes and the decision
rule."""
