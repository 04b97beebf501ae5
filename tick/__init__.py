"""tick: owns time. The fixed-rate server loop, the bot-swarm loop, and per-phase timings."""
