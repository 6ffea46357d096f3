"""Capturing on a real kernel: the probe catalogue, the tracefs set-up and its
undoing, guest_memfd's device."""
