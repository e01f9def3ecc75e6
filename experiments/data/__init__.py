"""Data pipelines: character corpora (synthetic, PTB, enwik8), BPTT streams, image data sets."""
