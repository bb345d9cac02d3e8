"""Training programs (run as is or under ``accelerate launch``)."""
