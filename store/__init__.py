"""The durable layer: the hunt ledger (claims, scores, joins) and world checkpoints."""
