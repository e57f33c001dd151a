"""Text tables, Markdown and HTML from typed results; everything taken from data is escaped here."""
