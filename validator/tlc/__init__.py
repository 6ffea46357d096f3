"""TLC, the real model checker: finding Java and the pinned jar, running TLC (and
stopping it with its parent), reading its output and its TLA+ values."""
