"""Building the romanizer's data files (lexicon, context model); never imported at run time."""
