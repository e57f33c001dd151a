"""Settings, files and the benchmark matrix, and the option table both doors (CLI, pytest)
declare once."""
