"""Where a block action runs: one protocol (:mod:`.base`), one module per runner."""
