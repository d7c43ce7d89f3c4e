"""Training the biLM: config, schedule, generators, batching, batch plan, stream, trainer, loop, log."""
