"""Measuring a run: data, models, the engine (features, batches, warm-up, timed passes),
decoding, metrics, the session, the stock reference, peers and data-parallel runs."""
