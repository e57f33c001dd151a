"""The results store (SQLite/PostgreSQL), change points over it, and exports to other tools'
formats."""
