"""The one typed model of reports, baseline files and A/B results, its JSON I/O and the
environment a report records."""
