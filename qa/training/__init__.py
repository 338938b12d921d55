"""Training, exporting and calibrating the shipped extractive reader."""
