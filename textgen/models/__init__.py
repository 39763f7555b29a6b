"""Model layer: the compact BERT backbone, adapters behind one step interface, model resolution."""
