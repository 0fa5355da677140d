"""Pre-issuance linting: pkilint plus Sceau's own rules, over the exact TBS bytes."""
