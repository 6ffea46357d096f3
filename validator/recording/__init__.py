"""Capturing on a real kernel: making the probe catalogue's events (kprobes), the tracefs
set-up and its undoing (plan, script, tracefs, session), guest_memfd's device.  What the
events mean is the replay's (validator/replay/catalogue.py); this package reads it."""
