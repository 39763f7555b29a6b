"""SPACES long-document summarization (algorithms.md section 2): clause splitting, oracle
extraction labels, the extractive tagger and the extract-then-generate pipeline."""
