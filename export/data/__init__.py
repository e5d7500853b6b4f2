"""Training data: the shipped demo data and generated datasets."""
