"""The one-command demo (``ci/demo``); see ``demo.run``."""
