"""Files in and out: options.json + weights.hdf5 (bilm-tf / AllenNLP), exports, checkpoints, vocab.txt."""
