"""poisoncheck: model-check and trace-validate the TDX / guest_memfd poisoning protocol."""

__version__ = "0.1.0"
