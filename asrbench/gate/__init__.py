"""Judging a report against stored baselines: baseline files, verdicts per metric, statistics
and the failure policy. No measuring."""
