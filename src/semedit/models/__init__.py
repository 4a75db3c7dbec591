"""Models: the embedded toon-64 family (architectures, training) and backbone loading."""
