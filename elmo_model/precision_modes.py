"""The names of the inference precisions (torch-free, so that command-line parsers load fast);
what each does is in :mod:`elmo_model.precision`."""

PRECISIONS = ("fp32", "bf16", "int8")
