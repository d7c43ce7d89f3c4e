"""The network: characters, options, token encoder, LSTMs, biLM, softmax, scalar mix, precision."""
