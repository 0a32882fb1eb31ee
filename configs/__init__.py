"""Experiment configs (ml_collections). Each file's ``get_config(arg)`` takes
an optional argument in config_flags' ``path:arg`` form; ``tiny`` shrinks the
model, images, batch and schedule for tests and smoke runs."""
