"""APoT weights: filled in below."""
