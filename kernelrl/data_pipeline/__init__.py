"""Data pipeline: problem sources, filters, teacher samples and curation into SFT datasets (issue 4)."""
